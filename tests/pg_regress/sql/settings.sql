-- arrw reserves the setting prefixes "ivfpq" and "arrw" once its own settings
-- are defined: a misspelt setting is an error, not a placeholder that silently
-- does nothing.
\set VERBOSITY sqlstate
SET ivfpq.probez = 3;
SET arrw.job_workerz = 1;
SELECT set_config('ivfpq.rerankk', '10', false);
\set VERBOSITY default
SET ivfpq.probez = 3;
SHOW ivfpq.probez;

-- The settings arrw defines are unaffected.
SET ivfpq.probes = 3;
SHOW ivfpq.probes;
RESET ivfpq.probes;
SHOW ivfpq.rerank;

-- Other prefixes still take placeholders.
SET arrw_test_elsewhere.anything = 'x';
SHOW arrw_test_elsewhere.anything;
RESET arrw_test_elsewhere.anything;
