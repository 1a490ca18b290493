//! The benchmark workloads B1-B4, shared by the criterion benches.
