-- The in-memory database workload of scripts/main-job.sh and bench/run.py's `sqlite3`: @ROWS@
-- rows (200000 in the main job), two indexes, group-by, delete, update, join; @JOIN_IDS@ is
-- @ROWS@ / 100. Both fill the two placeholders and run it with `sqlite3 :memory:`.
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB, n INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @ROWS@)
INSERT INTO t SELECT x, printf('%08x', (x * 2654435761) % 4294967296),
  zeroblob((x * 7919) % 300 + 1), (x * 40503) % 1000 FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_n ON t(n);
SELECT count(*), sum(length(v)), min(k), max(k) FROM t;
SELECT n, count(*), sum(length(v)) FROM t GROUP BY n ORDER BY 3 DESC, 1 LIMIT 3;
SELECT group_concat(k, ',') FROM (SELECT k FROM t ORDER BY k LIMIT 5);
DELETE FROM t WHERE id % 3 = 0;
UPDATE t SET v = zeroblob(length(v) * 2) WHERE n < 200;
SELECT count(*), sum(length(v)) FROM t;
SELECT count(*) FROM t a JOIN t b ON a.n = b.n WHERE a.id < @JOIN_IDS@;
