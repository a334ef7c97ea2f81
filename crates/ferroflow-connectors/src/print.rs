//! A sink that prints rows to standard output as a table.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use ferroflow_engine::{InstanceInfo, Sink, SinkWriter};

/// Prints each batch as a table, prefixed by the instance when parallel.
#[derive(Debug, Clone, Default)]
pub struct PrintSink {
    max_rows: Option<usize>,
}

impl PrintSink {
    /// Print every row.
    pub fn new() -> Self {
        Self::default()
    }

    /// Print at most `n` rows in all (a count of the rest is printed at the end).
    pub fn with_max_rows(n: usize) -> Self {
        PrintSink { max_rows: Some(n) }
    }
}

impl Sink for PrintSink {
    fn parallelism_hint(&self) -> Option<usize> {
        Some(1)
    }

    fn create_writer(
        &self,
        instance: &InstanceInfo,
        _: SchemaRef,
    ) -> ferroflow_engine::Result<Box<dyn SinkWriter>> {
        Ok(Box::new(PrintWriter {
            prefix: (instance.parallelism > 1).then(|| format!("{}> ", instance.index)),
            left: self.max_rows,
            skipped: 0,
        }))
    }
}

struct PrintWriter {
    prefix: Option<String>,
    left: Option<usize>,
    skipped: usize,
}

impl SinkWriter for PrintWriter {
    fn write(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        let batch = match self.left {
            Some(0) => {
                self.skipped += batch.num_rows();
                return Ok(());
            }
            Some(n) if n < batch.num_rows() => {
                self.skipped += batch.num_rows() - n;
                self.left = Some(0);
                batch.slice(0, n)
            }
            Some(n) => {
                self.left = Some(n - batch.num_rows());
                batch
            }
            None => batch,
        };
        let table = arrow_cast::pretty::pretty_format_batches(&[batch])?;
        for line in table.to_string().lines() {
            match &self.prefix {
                Some(p) => println!("{p}{line}"),
                None => println!("{line}"),
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ferroflow_engine::Result<()> {
        if self.skipped > 0 {
            println!("... {} more rows not printed", self.skipped);
        }
        Ok(())
    }
}
