-- Export: each record type's stored rows with the columns of the import format, named by key.
-- ``rosters.export`` wraps a block to turn each value into the text import reads back.

-- name: export_villages
-- Villages and communities with their flags; the city, counties and towns are shipped, not
-- exported.
SELECT code, name, 'village' AS level, lat, lon, blind_spot, remote, mountain, flood_storage,
       low_lying, geo_hazard
  FROM divisions WHERE level = 'village';

-- name: export_responders
-- Responders, with their B角 by 编号.
SELECT r.ref, r.name, r.phone, r.division_code, r.level, r.role, r.specialities,
       b.ref AS backup_ref, r.exercise
  FROM responders r LEFT JOIN responders b ON b.id = r.backup_id;

-- name: export_households
-- Households.
SELECT ref, village_code, address, head_name, phones, exercise FROM households;

-- name: export_special_persons
-- Special-group persons (老幼病残孕), with their household and helper (包保联系人) by 编号.
SELECT s.ref, s.name, s.category, s.village_code, h.ref AS household_ref, s.address, s.phone,
       r.ref AS helper_ref, s.exercise
  FROM special_persons s
  JOIN responders r ON r.id = s.helper_id
  LEFT JOIN households h ON h.id = s.household_id;

-- name: export_facilities
-- Facilities (schools, care homes, hospitals …) with their contacts.
SELECT ref, name, kind, village_code, address, contact_name, contact_phone, exercise
  FROM facilities;
