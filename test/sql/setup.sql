-- Objects the other regression tests share.
CREATE TABLE items (id int PRIMARY KEY, name text, total bigint);
INSERT INTO items SELECT g, 'item ' || g, g * 10 FROM generate_series(1, 5) g;

-- Bumped by the cached queries: sequences are not transactional, so
-- last_value counts how many times a query really ran.
CREATE SEQUENCE runs;

-- err(sql): 'ok', or the SQLSTATE, message and detail the statement fails with.
CREATE FUNCTION err(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || coalesce(nullif(' (' || detail || ')', ' ()'), '');
END
$$;

-- ran(): how many times the cached queries ran (runs moved) since the last
-- ran().  SECURITY DEFINER: any role may ask.
CREATE TABLE runs_seen (v bigint);
INSERT INTO runs_seen VALUES (0);
CREATE FUNCTION ran() RETURNS bigint SECURITY DEFINER LANGUAGE sql AS $$
    WITH old AS (SELECT v FROM runs_seen),
         upd AS (UPDATE runs_seen SET v = (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM runs)
                 RETURNING v)
    SELECT upd.v - old.v FROM upd, old
$$;

SELECT extname, extversion FROM pg_extension WHERE extname = 'stampede';
