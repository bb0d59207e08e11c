-- records.scope no longer a declared foreign key (docs/store.md, "PostgreSQL"):
-- its check cost every inserted record a lookup and a share lock of the
-- scope's row, a third of the server's time per batch, while every write
-- already holds that row locked. A record is only inserted by the batch
-- statement, which takes the scope's id from the scope's row it locked in
-- the same transaction, so it cannot name a missing scope. What the key also
-- guaranteed, that a scope is not deleted (or renumbered, or truncated) while
-- records name it, this trigger keeps, with the same error (SQLSTATE 23503).
ALTER TABLE records DROP CONSTRAINT records_scope_fkey;

CREATE FUNCTION scopes_keep_their_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        -- After a TRUNCATE of scopes (with records, if named with it).
        IF EXISTS (SELECT 1 FROM records) THEN
            RAISE EXCEPTION 'cannot truncate table "scopes": table "records" names its rows'
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    -- Runs once the row is locked, with a snapshot of its own: it sees the
    -- records of a writer that held the row and committed meanwhile.
    IF EXISTS (SELECT 1 FROM records WHERE scope = OLD.id) THEN
        RAISE EXCEPTION 'scope % still has records: delete them first', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER scopes_keep_their_records BEFORE DELETE OR UPDATE OF id ON scopes
    FOR EACH ROW EXECUTE FUNCTION scopes_keep_their_records();
CREATE TRIGGER scopes_keep_their_records_on_truncate AFTER TRUNCATE ON scopes
    FOR EACH STATEMENT EXECUTE FUNCTION scopes_keep_their_records();
