-- MaxSim over vector[]: maxsim(doc, query) sums, over the query's vectors, the
-- largest inner product with any of the document's vectors; doc @# query is its
-- negation, so ORDER BY doc @# query ranks the best document first.
SELECT maxsim(ARRAY['[1,0]', '[0,2]']::vector[], ARRAY['[3,1]', '[-1,1]']::vector[]);
SELECT ARRAY['[1,0]', '[0,2]']::vector[] @# ARRAY['[3,1]', '[-1,1]']::vector[];
SELECT maxsim(ARRAY['[1,2,3]']::vector[], ARRAY['[1,1,1]']::vector[]) = -('[1,2,3]'::vector <#> '[1,1,1]') AS same_as_inner_product;
-- An inner product that overflows to inf - inf is NaN, and so is the MaxSim
-- it is the best of (PostgreSQL orders NaN above every number).
SELECT '[1e30,1e30]'::vector <#> '[1e10,-1e10]' AS ip_distance,
       maxsim('{"[1e30,1e30]"}', '{"[1e10,-1e10]"}') AS one_element,
       maxsim('{"[1e30,1e30]","[0,0]"}', '{"[1e10,-1e10]"}') AS with_another,
       '{"[0,0]","[1e30,1e30]"}'::vector[] @# '{"[1e10,-1e10]"}' AS distance;

CREATE TABLE docs (id int, vs vector(3)[]);
INSERT INTO docs VALUES
  (1, ARRAY['[1,0,0]', '[0,1,0]']::vector[]),
  (2, ARRAY['[0,0,1]']::vector[]),
  (3, ARRAY['[0.5,0.5,0]', '[0,0,0.5]', '[1,1,1]']::vector[]),
  (4, NULL);
SELECT id, round((vs @# ARRAY['[1,0,0]', '[0,0,1]']::vector[])::numeric, 3) AS distance
FROM docs ORDER BY vs @# ARRAY['[1,0,0]', '[0,0,1]']::vector[], id;

-- Errors, with their SQLSTATEs.
\set VERBOSITY sqlstate
SELECT maxsim('{}'::vector[], ARRAY['[1,2]']::vector[]);
SELECT maxsim(ARRAY['[1,2]']::vector[], '{}'::vector[]);
SELECT maxsim(ARRAY['[1,2]', NULL]::vector[], ARRAY['[1,2]']::vector[]);
SELECT maxsim(ARRAY['[1,2]', '[1,2,3]']::vector[], ARRAY['[1,2]']::vector[]);
SELECT maxsim(ARRAY['[1,2]']::vector[], ARRAY['[1,2,3]']::vector[]);
SELECT maxsim(ARRAY[['[1,2]'], ['[3,4]']]::vector[], ARRAY['[1,2]']::vector[]);
SELECT maxsim(array_fill('[1,2]'::vector, ARRAY[8193]), ARRAY['[1,2]']::vector[]);
\set VERBOSITY default
SELECT maxsim('{}'::vector[], ARRAY['[1,2]']::vector[]);
SELECT maxsim(array_fill('[1,2]'::vector, ARRAY[8193]), ARRAY['[1,2]']::vector[]);
-- NULL arguments give NULL (STRICT).
SELECT maxsim(NULL, ARRAY['[1,2]']::vector[]) IS NULL AS is_null;
DROP TABLE docs;
