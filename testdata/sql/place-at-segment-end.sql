-- pitr_place_at_segment_end(gap, transactional): pads WAL with logical
-- decoding messages (pg_logical_emit_message, prefix 'pad') until the WAL
-- insert position is exactly `gap` bytes before the end of a WAL segment, so
-- that the NEXT record inserted starts there and, if it is longer than `gap`,
-- crosses into the next segment. Returns that insert position
-- (segment end - gap); raises an exception if it cannot get there.
--
-- Self-contained and idempotent (CREATE OR REPLACE); PostgreSQL 13-18, 64-bit
-- builds; superuser (pg_logical_emit_message). Used by
-- testdata/make-crossing-wal-fixtures.sh and by the end-to-end tests.
--
-- gap: a multiple of 8 (insert positions are MAXALIGNed), at least 8 and at
--   most wal_block_size - 136 (the target then lies on the segment's last
--   page with room for a filler record before it).
-- transactional: emit transactional messages. The first one gives the calling
--   transaction an xid (it is not a subtransaction: the function has no
--   EXCEPTION block), so its COMMIT/ROLLBACK/PREPARE writes a record there.
--   With false no xid is assigned and nothing but the messages is written.
--
-- Record sizes it relies on (PostgreSQL 13-18): a message record is
--   XLogRecord (24) + main-data block header (2 when main data <= 255 bytes,
--   else 5) + main data, main data = offsetof(xl_logical_message, message)
--   (24: Oid, bool, 2 x Size) + prefix with its NUL ('pad\0': 4) + n bytes;
--   the insert position advances by MAXALIGN(total) (8), plus a page header
--   (24 bytes, 40 at a segment start) for every page boundary crossed. The
--   smallest message record takes 56 bytes.
--
-- Method: measure the insert position; choose the target (end of the current
-- segment - gap, or of the next segment when fewer than 56 bytes are left
-- before the target); if the insert position is not yet on the target's page,
-- emit one filler sized to land mid-way between that page's header and the
-- target (page headers accounted for; at most 16 MB per message); once on
-- the target's page, emit one message of exactly (target - position) bytes;
-- measure again and repeat until the position equals the target. Records that
-- other processes insert meanwhile (bgwriter's RUNNING_XACTS, checkpoints)
-- only cost another round. Exact only at the moment it returns: callers must
-- verify (e.g. with pg_waldump) that nothing was inserted after it.
CREATE OR REPLACE FUNCTION public.pitr_place_at_segment_end(gap int, transactional bool)
RETURNS pg_lsn
LANGUAGE plpgsql
VOLATILE
AS $pitr$
DECLARE
    seg bigint := pg_size_bytes(current_setting('wal_segment_size'));
    blk bigint := current_setting('wal_block_size')::bigint;
    rec_hdr constant bigint := 24;       -- SizeOfXLogRecord
    msg_fixed constant bigint := 24 + 4; -- offsetof(xl_logical_message, message) + 'pad\0'
    short_phd constant bigint := 24;     -- SizeOfXLogShortPHD
    long_phd constant bigint := 40;      -- SizeOfXLogLongPHD
    min_rec constant bigint := 56;       -- MAXALIGN(24 + 2 + 28 + 0)
    max_filler constant bigint := 16 * 1024 * 1024;
    cur bigint;
    tgt bigint;
    tpage bigint;
    aim bigint;
    len bigint;
    n bigint;
    rounds int := 0;
    max_rounds int;
BEGIN
    IF gap IS NULL OR transactional IS NULL THEN
        RAISE EXCEPTION 'pitr_place_at_segment_end: arguments must not be NULL';
    END IF;
    IF gap < 8 OR gap % 8 <> 0 OR gap > blk - 136 THEN
        RAISE EXCEPTION 'pitr_place_at_segment_end: gap % must be a multiple of 8 between 8 and %',
            gap, blk - 136;
    END IF;
    max_rounds := (seg / max_filler)::int + 200;

    LOOP
        cur := (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint;
        tgt := (cur / seg + 1) * seg - gap;
        IF cur = tgt THEN
            RETURN (to_hex(cur >> 32) || '/' || to_hex(cur & 4294967295))::pg_lsn;
        END IF;
        rounds := rounds + 1;
        IF rounds > max_rounds THEN
            RAISE EXCEPTION 'pitr_place_at_segment_end: insert position % did not reach segment end - % after % rounds',
                pg_current_wal_insert_lsn(), gap, rounds - 1;
        END IF;
        IF tgt - cur < min_rec THEN
            tgt := tgt + seg;   -- too close (or past): the next segment's end
        END IF;
        tpage := tgt - tgt % blk;

        IF cur >= tpage THEN
            -- On the target's page, at least min_rec before it: one exact record.
            len := tgt - cur;
        ELSE
            -- Land half-way between the target page's header and the target.
            aim := tpage + short_phd + ((tgt - tpage - short_phd) / 2 / 8) * 8;
            len := aim - cur
                   - (aim / blk - cur / blk) * short_phd            -- page headers crossed
                   - (aim / seg - cur / seg) * (long_phd - short_phd); -- long ones at segment starts
            len := greatest(least(len, max_filler), min_rec);
        END IF;

        -- Message length n such that the record is exactly len bytes long.
        IF len - rec_hdr - 2 <= 255 THEN
            n := len - rec_hdr - 2 - msg_fixed;
        ELSE
            n := len - rec_hdr - 5 - msg_fixed;
        END IF;
        PERFORM pg_logical_emit_message(transactional, 'pad', repeat('x', n::int));
    END LOOP;
END
$pitr$;
