-- Listings (reconciliation of deletions): the scope's open listing, the last
-- listing id handed out, and per record the listing that last saw it.
ALTER TABLE scopes ADD COLUMN open_listing INTEGER;
ALTER TABLE scopes ADD COLUMN last_listing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN listing INTEGER;
