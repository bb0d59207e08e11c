-- Nango's names for a connection (docs/nango.md): the integration it belongs
-- to (Nango's provider config key), and the format of the webhooks sent about
-- it (null: the server's default). A delivery keeps the format it was queued
-- in: it decides the signature headers it is sent with.
ALTER TABLE connections ADD COLUMN integration TEXT;
ALTER TABLE connections ADD COLUMN webhook_format TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN format TEXT NOT NULL DEFAULT 'sync-host';
