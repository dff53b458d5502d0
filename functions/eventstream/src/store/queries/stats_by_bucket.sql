-- Events received in [$1, $2) from source $4 (any when NULL), counted per status in buckets of $3
-- seconds aligned to the Unix epoch; every bucket of the range, empty ones with zeros. Loaded by
-- PgAnalyticsStore::stats and by the GraphQL benchmark, which shows its plans.
WITH bucketed AS (
    SELECT date_bin(make_interval(secs => $3), received_at, TIMESTAMPTZ 'epoch') AS start,
           count(*) FILTER (WHERE status = 'success') AS success,
           count(*) FILTER (WHERE status = 'info') AS info,
           count(*) FILTER (WHERE status = 'warning') AS warning,
           count(*) FILTER (WHERE status = 'error') AS error
    FROM events
    WHERE received_at >= $1 AND received_at < $2 AND ($4::text IS NULL OR source = $4)
    GROUP BY 1
), buckets AS (
    SELECT generate_series(
        date_bin(make_interval(secs => $3), $1, TIMESTAMPTZ 'epoch'),
        $2 - interval '1 microsecond',
        make_interval(secs => $3)
    ) AS start
)
SELECT buckets.start AS "start!",
       coalesce(bucketed.success, 0) AS "success!",
       coalesce(bucketed.info, 0) AS "info!",
       coalesce(bucketed.warning, 0) AS "warning!",
       coalesce(bucketed.error, 0) AS "error!"
FROM buckets LEFT JOIN bucketed USING (start)
ORDER BY buckets.start
