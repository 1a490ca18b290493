//! Tests of #[derive(GraphState)].
