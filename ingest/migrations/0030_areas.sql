-- Areas: where a resident lives, as a path from the community down (neighbourhood committee,
-- building: 'kangjian/kangle/12'), and the supervisors who see everything in theirs.
ALTER TABLE residents ADD COLUMN IF NOT EXISTS area text NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS areas text[] NOT NULL DEFAULT '{}';
ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_role_check;
ALTER TABLE contacts ADD CONSTRAINT contacts_role_check
    CHECK (role IN ('care_staff', 'family_doctor', 'family', 'emergency', 'supervisor'));

-- An area lies within a list of areas if it is one of them or beneath one ('*': every area).
CREATE OR REPLACE FUNCTION area_within(area text, areas text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '*' = ANY(areas)
        OR EXISTS (SELECT 1 FROM unnest(areas) AS a(prefix)
                   WHERE area = a.prefix OR starts_with(area, a.prefix || '/'))
$$;

-- Whom a contact may see and act for: the residents whose care team they are on, and for a
-- supervisor every active resident in their areas.
CREATE OR REPLACE VIEW contact_residents AS
SELECT t.contact_id, t.resident_id FROM care_team t
UNION
SELECT c.id, r.id FROM contacts c JOIN residents r ON area_within(r.area, c.areas)
WHERE c.role = 'supervisor' AND c.active AND r.active;
