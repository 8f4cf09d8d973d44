"""Campaign analysis: inputs and hashes (inputs.py), engines (engines.py: local; claude.py:
Claude), the service and its runner (service.py), exports (report.py) and transcript imports
(imports.py)."""
