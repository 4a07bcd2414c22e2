-- Issue 16. The upstream APIs an account speaks (`accounts[].protocols`, a JSON list of
-- `responses`/`chat`/`messages`; NULL = the defaults of its platform and kind), and the model
-- name a client asked for when it differs from the upstream model the row is priced by (a
-- group's `model_map`, or a translated request).
ALTER TABLE accounts ADD COLUMN protocols TEXT;
ALTER TABLE usage ADD COLUMN client_model TEXT;
