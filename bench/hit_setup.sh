# shellcheck shell=bash
# The 100-row result that bench/hit_vs_matview.sh (throughput) and
# bench/hit_cost.sh (instructions) both measure, so that the two measure the
# same table, the same query and the same statements.  Sourced, not run.

# The query whose 100 rows A reads from a materialized view and B from the cache.
hit_query='SELECT id, name, total FROM products ORDER BY total DESC LIMIT 100'

# hit_setup: the tables, the matview, the view and the PL/pgSQL cache, in the
# database PGHOST/PGPORT/PGDATABASE point at (dropped first if there).
hit_setup() {
	local query=$hit_query
	psql -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stampede;
DROP MATERIALIZED VIEW IF EXISTS mv_top;
DROP VIEW IF EXISTS v_top;
DROP TABLE IF EXISTS products, cache_table CASCADE;

-- 7919 is invertible modulo the prime 1000003: every total differs, so the
-- top 100 have one order.
CREATE TABLE products (id int PRIMARY KEY, name text, total bigint);
INSERT INTO products
SELECT g, 'product ' || g, (g::bigint * 7919) % 1000003 FROM generate_series(1, 10000) g;
ANALYZE products;

CREATE MATERIALIZED VIEW mv_top AS $query;

-- How a dashboard would read the cache: a view, named like the matview.
CREATE VIEW v_top AS
SELECT * FROM stampede_cached('top100', \$\$$query\$\$, '1 hour') AS t(id int, name text, total bigint);

-- What one might write by hand instead of stampede.
CREATE UNLOGGED TABLE cache_table (key text PRIMARY KEY, value jsonb, expires timestamptz);

CREATE OR REPLACE FUNCTION hand_cached(k text, query text, ttl interval)
RETURNS SETOF products LANGUAGE plpgsql AS \$\$
DECLARE
    v jsonb;
BEGIN
    SELECT value INTO v FROM cache_table WHERE key = k AND expires > now();
    IF NOT FOUND THEN
        PERFORM pg_advisory_xact_lock(hashtext(k));
        -- Another session may have filled it while we waited for the lock.
        SELECT value INTO v FROM cache_table WHERE key = k AND expires > now();
        IF NOT FOUND THEN
            EXECUTE format('SELECT coalesce(jsonb_agg(q), ''[]'') FROM (%s) q', query) INTO v;
            INSERT INTO cache_table VALUES (k, v, now() + ttl)
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM jsonb_populate_recordset(NULL::products, v);
END \$\$;
SQL
}

# hit_scripts DIR: the statements, one pgbench script file each, DIR/A.sql ...
#   A  SELECT * FROM mv_top (the materialized view)
#   B  SELECT * FROM stampede_cached('top100', ...) AS t(...)
#   C  SELECT * FROM hand_cached('top100', ...) (the PL/pgSQL cache)
#   D  SELECT * FROM v_top (a view over B's call)
hit_scripts() {
	local dir=$1 query=$hit_query
	echo "SELECT * FROM mv_top;" >"$dir/A.sql"
	echo "SELECT * FROM stampede_cached('top100', \$\$$query\$\$, '1 hour') AS t(id int, name text, total bigint);" >"$dir/B.sql"
	echo "SELECT * FROM hand_cached('top100', \$\$$query\$\$, '1 hour');" >"$dir/C.sql"
	echo "SELECT * FROM v_top;" >"$dir/D.sql"
}
