//! Integration tests of dashflow-graph.

mod derive;
