//! Integration tests of dashflow-executor.
