"""Where a study lives and how its records are written: locations (local folder, NFS, s3://, gs://),
the results store (rows per trial, results.parquet), output-folder checks."""
