-- 0002_writes.sql - writes: validation rules as CHECK constraints, the
-- idempotency records and catalog_write(), the one statement each write
-- runs (docs/consistency.md, "PostgreSQL side").

-- Defence in depth: the gateway validates every body with the same rules.
ALTER TABLE products
    ADD CONSTRAINT products_sku_format
        CHECK (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    ADD CONSTRAINT products_name_length
        CHECK (char_length(name) BETWEEN 1 AND 200),
    ADD CONSTRAINT products_description_length
        CHECK (char_length(description) <= 4000),
    ADD CONSTRAINT products_price_range
        CHECK (price_cents BETWEEN 0 AND 1000000000000),
    ADD CONSTRAINT products_currency_format
        CHECK (currency ~ '^[A-Z]{3}$'),
    ADD CONSTRAINT products_stock_range
        CHECK (stock >= 0);

-- One row per Idempotency-Key whose first request succeeded. fingerprint is
-- sha256 of the replica's fingerprint of the request; product is the row as
-- it was answered (NULL for a delete).
CREATE TABLE idempotency_keys (
    key         text        PRIMARY KEY,
    fingerprint bytea       NOT NULL,
    status      int         NOT NULL,
    product     products,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- catalog_write: one write, in the caller's (single-statement) transaction.
--
--   p_op           'create', 'replace', 'patch' or 'delete'
--   p_id           the product id (for a create: the id reserved with
--                  nextval of the identity sequence)
--   p_if_match     0, or the version the row must have
--   p_key          NULL, or the Idempotency-Key
--   p_fingerprint  the request's fingerprint; sha256 of it is stored
--   p_sku .. p_stock  the fields (create, replace; patch: those in p_mask)
--   p_mask         patch only: bit (1 << field number) per field to change
--                  (sku 2, name 3, description 4, price_cents 5,
--                  currency 6, stock 7)
--   p_ttl_s        seconds the idempotency record lives
--
-- Returns one row: status (HTTP-like), replayed, then the product columns
-- (NULL unless the status is 200 or 201). Statuses: 200, 201, 204; 404 no
-- such product; 412 If-Match is not the current version; 409 with sku set
-- to the taken sku, or 409 with every column NULL when the key is held by a
-- request still running; 422 key reused with another request; 400 a value
-- breaks a CHECK constraint. Only 2xx results change anything.
CREATE FUNCTION catalog_write(
    p_op text, p_id bigint, p_if_match int, p_key text, p_fingerprint bytea,
    p_sku text, p_name text, p_description text, p_price_cents bigint,
    p_currency text, p_stock int, p_mask int, p_ttl_s int)
RETURNS TABLE (
    status int, replayed boolean, id bigint, sku text, name text,
    description text, price_cents bigint, currency text, stock int,
    version int, created_us bigint, updated_us bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_fp     bytea := sha256(p_fingerprint);
    v_idem   idempotency_keys%ROWTYPE;
    v_row    products%ROWTYPE;
    v_status int;
    v_found  boolean;
BEGIN
    IF p_key IS NOT NULL THEN
        -- The first request with this key holds the lock until it commits;
        -- a second one must not wait for it (the client retries).
        IF NOT pg_try_advisory_xact_lock(hashtextextended(p_key, 0)) THEN
            RETURN QUERY SELECT 409, false, NULL::bigint, NULL::text,
                NULL::text, NULL::text, NULL::bigint, NULL::text,
                NULL::int, NULL::int, NULL::bigint, NULL::bigint;
            RETURN;
        END IF;
        DELETE FROM idempotency_keys k
            WHERE k.key = p_key AND k.expires_at <= now();
        SELECT * INTO v_idem FROM idempotency_keys k WHERE k.key = p_key;
        IF FOUND THEN
            IF v_idem.fingerprint <> v_fp THEN
                RETURN QUERY SELECT 422, false, NULL::bigint, NULL::text,
                    NULL::text, NULL::text, NULL::bigint, NULL::text,
                    NULL::int, NULL::int, NULL::bigint, NULL::bigint;
                RETURN;
            END IF;
            v_row := v_idem.product;
            RETURN QUERY SELECT v_idem.status, true, v_row.id, v_row.sku,
                v_row.name, v_row.description, v_row.price_cents,
                v_row.currency::text, v_row.stock, v_row.version,
                (extract(epoch FROM v_row.created_at) * 1000000)::bigint,
                (extract(epoch FROM v_row.updated_at) * 1000000)::bigint;
            RETURN;
        END IF;
    END IF;

    BEGIN
        IF p_op = 'create' THEN
            INSERT INTO products AS t (id, sku, name, description,
                    price_cents, currency, stock)
                OVERRIDING SYSTEM VALUE
                VALUES (p_id, p_sku, p_name, p_description, p_price_cents,
                    p_currency, p_stock)
                RETURNING t.* INTO v_row;
            v_status := 201;
        ELSIF p_op = 'replace' OR p_op = 'patch' THEN
            UPDATE products AS t SET
                sku = CASE WHEN p_op = 'replace' OR p_mask & 4 <> 0
                    THEN p_sku ELSE t.sku END,
                name = CASE WHEN p_op = 'replace' OR p_mask & 8 <> 0
                    THEN p_name ELSE t.name END,
                description = CASE WHEN p_op = 'replace' OR p_mask & 16 <> 0
                    THEN p_description ELSE t.description END,
                price_cents = CASE WHEN p_op = 'replace' OR p_mask & 32 <> 0
                    THEN p_price_cents ELSE t.price_cents END,
                currency = CASE WHEN p_op = 'replace' OR p_mask & 64 <> 0
                    THEN p_currency ELSE t.currency END,
                stock = CASE WHEN p_op = 'replace' OR p_mask & 128 <> 0
                    THEN p_stock ELSE t.stock END,
                version = t.version + 1,
                updated_at = now()
            WHERE t.id = p_id AND (p_if_match = 0 OR t.version = p_if_match)
            RETURNING t.* INTO v_row;
            v_found := FOUND;
            v_status := 200;
        ELSIF p_op = 'delete' THEN
            DELETE FROM products AS t
                WHERE t.id = p_id
                  AND (p_if_match = 0 OR t.version = p_if_match);
            v_found := FOUND;
            v_status := 204;
        ELSE
            RAISE EXCEPTION 'catalog_write: unknown op %', p_op;
        END IF;
    EXCEPTION
        WHEN unique_violation THEN
            -- The primary key cannot collide (the id comes from the
            -- sequence), so this is the sku.
            RETURN QUERY SELECT 409, false, NULL::bigint, p_sku,
                NULL::text, NULL::text, NULL::bigint, NULL::text,
                NULL::int, NULL::int, NULL::bigint, NULL::bigint;
            RETURN;
        WHEN check_violation OR not_null_violation
            OR string_data_right_truncation THEN
            RETURN QUERY SELECT 400, false, NULL::bigint, NULL::text,
                NULL::text, NULL::text, NULL::bigint, NULL::text,
                NULL::int, NULL::int, NULL::bigint, NULL::bigint;
            RETURN;
    END;

    IF p_op <> 'create' AND NOT v_found THEN
        -- Nothing matched: tell an unknown id from a stale If-Match.
        IF EXISTS (SELECT 1 FROM products t WHERE t.id = p_id) THEN
            v_status := 412;
        ELSE
            v_status := 404;
        END IF;
        RETURN QUERY SELECT v_status, false, NULL::bigint, NULL::text,
            NULL::text, NULL::text, NULL::bigint, NULL::text,
            NULL::int, NULL::int, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF p_op = 'delete' THEN
        v_row := NULL;
    END IF;

    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (key, fingerprint, status, product,
                created_at, expires_at)
            VALUES (p_key, v_fp, v_status,
                CASE WHEN p_op = 'delete' THEN NULL ELSE v_row END,
                now(), now() + make_interval(secs => p_ttl_s));
    END IF;

    RETURN QUERY SELECT v_status, false, v_row.id, v_row.sku, v_row.name,
        v_row.description, v_row.price_cents, v_row.currency::text,
        v_row.stock, v_row.version,
        (extract(epoch FROM v_row.created_at) * 1000000)::bigint,
        (extract(epoch FROM v_row.updated_at) * 1000000)::bigint;
END;
$$;
