//! `dashflow ui`: the web viewer over this home's WAL and, with `--db`, a checkpoint database.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use dashflow_ui::{Bind, Reach, Viewer};

use crate::cli::{DatabaseArgs, UiArgs};
use crate::commands::threads;
use crate::store;

pub(crate) fn run(home: Option<&Path>, args: &UiArgs, out: &mut dyn Write) -> Result<()> {
    let wal_dir = store::existing_wal_dir(home)?;
    let bind = Bind::new(
        args.bind,
        if args.allow_remote { Reach::AllowRemote } else { Reach::LoopbackOnly },
        args.token.clone(),
    )?;
    if args.schema.is_some() && args.db.is_none() {
        anyhow::bail!("--schema needs --db: it names the schema of a PostgreSQL checkpoint database");
    }
    // Checked here, outside the viewer's runtime (the helper's own runtime is dropped unused).
    let database = match &args.db {
        Some(db) => Some(threads::database(&DatabaseArgs { db: db.clone(), schema: args.schema.clone() })?.0),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime for the viewer")?;
    runtime.block_on(async {
        let mut viewer = Viewer::new(&wal_dir)?;
        if let Some(database) = &database {
            let checkpointer = threads::open(database, args.schema.as_deref()).await?;
            viewer = viewer.checkpointer(Arc::from(checkpointer));
        }
        let listener = bind.listen().await?;
        writeln!(out, "dashflow ui: serving {} on {} (Ctrl-C to stop)", wal_dir.display(), listener.url())?;
        out.flush()?;
        viewer.serve(listener, std::future::pending()).await?;
        Ok(())
    })
}
