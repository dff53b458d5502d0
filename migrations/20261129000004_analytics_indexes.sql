-- The analytics queries (stats, statusCounts) read received_at, status and source of every event
-- in a time range. With status and source carried in the index that orders events by time,
-- PostgreSQL answers them with an index-only scan instead of fetching each row from the table.
-- It matters most for the generic plan a prepared statement switches to after five runs: that plan
-- assumes a narrow range, and over 30 days of 1,000,000 events its index scan, with a heap fetch
-- per row and an on-disk sort, took ~0.9 s; the index-only scan with a hash aggregate ~0.35 s
-- (BENCHMARKS.md, scripts/bench-graphql).
--
-- It replaces events_received_at_idx rather than adding an index: same key, so newest-first
-- pagination still uses it, and ingest maintains as many indexes as before, each entry about
-- 20 bytes wider. Built in the migration's transaction, it blocks writes to events while it builds
-- (about a second per million events on the development machine).
DROP INDEX events_received_at_idx;
CREATE INDEX events_received_at_idx ON events (received_at DESC, id DESC) INCLUDE (status, source);
