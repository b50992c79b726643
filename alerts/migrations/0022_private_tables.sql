-- Read-only roles (Grafana's) get SELECT on every table by default privileges; these three hold
-- what signs sessions and ack links, token digests, and message bodies with live ack links.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT grantee, table_name FROM information_schema.role_table_grants
        WHERE table_schema = 'public'
          AND table_name IN ('alert_keys', 'contact_tokens', 'notifications')
          AND grantee NOT IN (current_user, 'PUBLIC')
    LOOP
        EXECUTE format('REVOKE ALL ON %I FROM %I', g.table_name, g.grantee);
    END LOOP;
END
$$;
