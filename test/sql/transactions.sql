-- Rows a transaction computed after it wrote are never stored, however the
-- query reaches what was written: a partition or an inheritance child read
-- through its parent, a function, a trigger's table, a foreign key's
-- cascade.  After ROLLBACK, nobody gets them.
CREATE TABLE tx_meas (id int, v int) PARTITION BY RANGE (id);
CREATE TABLE tx_meas_1 PARTITION OF tx_meas FOR VALUES FROM (0) TO (100);
INSERT INTO tx_meas VALUES (1, 10);
CREATE TABLE tx_parent (id int);
CREATE TABLE tx_child () INHERITS (tx_parent);
INSERT INTO tx_parent VALUES (1);
CREATE FUNCTION tx_count_items() RETURNS bigint STABLE SECURITY DEFINER LANGUAGE sql
    AS 'SELECT count(*) FROM items';
CREATE TABLE tx_log (n int);
CREATE FUNCTION tx_log_it() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN INSERT INTO tx_log VALUES (1); RETURN NULL; END$$;
CREATE TABLE tx_fired (id int);
CREATE TRIGGER tx_log_it AFTER INSERT ON tx_fired FOR EACH ROW EXECUTE FUNCTION tx_log_it();
CREATE TABLE tx_pk (id int PRIMARY KEY);
CREATE TABLE tx_fk (id int REFERENCES tx_pk ON DELETE CASCADE);
INSERT INTO tx_pk VALUES (1), (2);
INSERT INTO tx_fk VALUES (1), (2);

BEGIN;
INSERT INTO tx_meas_1 VALUES (2, 20);
INSERT INTO tx_child VALUES (2);
INSERT INTO items VALUES (99, 'uncommitted', 0);
INSERT INTO tx_fired VALUES (1);
DELETE FROM tx_pk WHERE id = 2;
SELECT * FROM stampede_cached('tx:partition', 'SELECT count(*) AS n FROM tx_meas', '5 minutes') AS t(n bigint);
SELECT * FROM stampede_cached('tx:inherit', 'SELECT count(*) AS n FROM tx_parent', '5 minutes') AS t(n bigint);
SELECT * FROM stampede_cached('tx:function', 'SELECT tx_count_items() AS n', '5 minutes') AS t(n bigint);
SELECT * FROM stampede_cached('tx:trigger', 'SELECT count(*) AS n FROM tx_log', '5 minutes') AS t(n bigint);
SELECT * FROM stampede_cached('tx:cascade', 'SELECT count(*) AS n FROM tx_fk', '5 minutes') AS t(n bigint);
ROLLBACK;

-- Another session: what is committed, each filled anew (nothing was stored).
\c
SELECT (SELECT n FROM stampede_cached('tx:partition', 'SELECT count(*) AS n FROM tx_meas', '5 minutes') AS t(n bigint)) = 1 AS partition_committed,
       (SELECT n FROM stampede_cached('tx:inherit', 'SELECT count(*) AS n FROM tx_parent', '5 minutes') AS t(n bigint)) = 1 AS inherit_committed,
       (SELECT n FROM stampede_cached('tx:function', 'SELECT tx_count_items() AS n', '5 minutes') AS t(n bigint)) = (SELECT count(*) FROM items) AS function_committed,
       (SELECT n FROM stampede_cached('tx:trigger', 'SELECT count(*) AS n FROM tx_log', '5 minutes') AS t(n bigint)) = 0 AS trigger_committed,
       (SELECT n FROM stampede_cached('tx:cascade', 'SELECT count(*) AS n FROM tx_fk', '5 minutes') AS t(n bigint)) = 2 AS cascade_committed;

-- A transaction that has only read, or only moved a sequence, still gets
-- hits and fills the store.
SELECT stampede_stats_reset();
BEGIN;
SELECT nextval('runs') > 0 AS moved;
SELECT * FROM stampede_cached('tx:partition', 'SELECT count(*) AS n FROM tx_meas', '5 minutes') AS t(n bigint);
COMMIT;
SELECT hits, executions FROM stampede_stats;

SELECT count(*) FILTER (WHERE stampede_invalidate(k)) >= 0 AS invalidated
FROM unnest(ARRAY['tx:partition', 'tx:inherit', 'tx:function', 'tx:trigger', 'tx:cascade']) k;
DROP TABLE tx_meas, tx_parent CASCADE;
DROP TABLE tx_fired, tx_log, tx_fk, tx_pk;
DROP FUNCTION tx_count_items(), tx_log_it();
