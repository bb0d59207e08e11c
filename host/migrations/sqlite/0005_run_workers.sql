-- The process that ran each run (host:pid), so an operator can tell which
-- worker it was, and a run whose worker died can be closed.
ALTER TABLE runs ADD COLUMN worker TEXT;
