-- Multi-vector documents: MaxSim over vector[] (late interaction, ColBERT).
-- maxsim(doc, query) = sum over query vectors of the largest inner product with
-- a document vector (higher is better); doc @# query is its negation, so that
-- ORDER BY doc @# $1 ranks nearest first (VectorChord's operator and meaning).

-- COST 100: one call is query x document inner products (and reads a
-- TOASTed array), not one; at the default cost of 1 the planner sorted a whole
-- table by @# rather than use a vector_maxsim_ops index.
CREATE FUNCTION maxsim(vector[], vector[]) RETURNS float8
	AS 'MODULE_PATHNAME', 'arrw_vector_maxsim' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 100;
COMMENT ON FUNCTION maxsim(vector[], vector[]) IS 'MaxSim similarity of a document''s vectors (first) and a query''s (second): sum over query vectors of the largest inner product';

CREATE FUNCTION maxsim_distance(vector[], vector[]) RETURNS float8
	AS 'MODULE_PATHNAME', 'arrw_vector_maxsim_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 100;
COMMENT ON FUNCTION maxsim_distance(vector[], vector[]) IS 'negated MaxSim (the @# operator): lower is nearer';

CREATE OPERATOR @# (
	LEFTARG = vector[], RIGHTARG = vector[], PROCEDURE = maxsim_distance
);
COMMENT ON OPERATOR @# (vector[], vector[]) IS 'negated MaxSim of a document''s vectors (left) and a query''s (right)';

-- The ivfpq operator class for vector[] columns: one index entry per element
-- (under its row's TID), encoded for inner products; `ORDER BY v @# $1 LIMIT k`
-- probes the lists of each query vector, estimates each row's MaxSim and
-- re-ranks the best rows exactly (docs/multivector.md). Support function 1
-- names the distance, as for the single-vector classes.
CREATE OPERATOR CLASS vector_maxsim_ops
	FOR TYPE vector[] USING ivfpq AS
	OPERATOR 1 @# (vector[], vector[]) FOR ORDER BY float_ops,
	FUNCTION 1 maxsim_distance(vector[], vector[]);
