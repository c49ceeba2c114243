"""A module that fails as it loads (not with ImportError): a clear one-line refusal, not a crash."""

raise RuntimeError("this library needs a licence server")
