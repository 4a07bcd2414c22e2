-- How the client reached the gateway: `http` (every row before this migration), or `websocket`
-- for one `response.create` turn of a Responses WebSocket (one row per turn).
ALTER TABLE usage ADD COLUMN transport TEXT NOT NULL DEFAULT 'http';
