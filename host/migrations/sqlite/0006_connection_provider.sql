-- The provider each connection syncs from: which provider module reads its
-- notifications (and names the configuration key that routes them). Every
-- connection stored before this had the one provider the host knew.
ALTER TABLE connections ADD COLUMN provider TEXT NOT NULL DEFAULT 'quickbooks';
