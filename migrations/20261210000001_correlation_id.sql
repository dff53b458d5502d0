-- The id that follows an event from its request to its email (X-Correlation-Id, API Gateway's
-- request id, or one the API made): the sweep republishes with it. Null for events stored before.
ALTER TABLE events ADD COLUMN correlation_id text;
