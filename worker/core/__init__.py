"""Pure rules and vocabulary: errors, job states, retry and fleet-limit arithmetic, requests and
batch files, the URL policy, signing, times, settings, and the ports the rest of the code sends
through. Imports no I/O library (no database, HTTP, object store or broker client): every rule
here is tested without servers."""
