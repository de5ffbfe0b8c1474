"""The model as the API and the job worker both see it: its contract, how it is loaded, and which version answers
(the packaged one, or the registry alias's holder)."""
