//! Parquet sources: a file, a directory of `*.parquet`, or a glob of shards.
//!
//! Files are opened once to read their footers (row counts, schema); rows are then read one
//! row group at a time, only the columns the format needs, in record batches of at most
//! [`READ_BATCH_ROWS`] rows, so memory stays flat however large the files are.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::ProjectionMask;

use crate::config::{OnError, SourceConfig};
use crate::error::{DataError, Location, Result};
use crate::format::{BoundFormat, RowFormat};
use crate::Sample;

/// Rows decoded per Arrow record batch: bounds the memory of one read.
pub const READ_BATCH_ROWS: usize = 1024;

/// One Parquet file of a source: its footer, the columns read, and the bound format.
#[derive(Debug, Clone)]
pub struct ParquetFile {
    pub path: Arc<PathBuf>,
    meta: ArrowReaderMetadata,
    projection: ProjectionMask,
    bound: BoundFormat,
    /// Rows of each row group, and the file-level index of each group's first row.
    pub row_group_rows: Vec<usize>,
    pub row_group_start: Vec<u64>,
    pub num_rows: u64,
}

/// A row read from a source, with where it came from; `sample` is `Err` for a bad row.
#[derive(Debug)]
pub struct Row {
    pub loc: Location,
    pub sample: Result<Sample>,
}

/// A resolved source: its files (sorted by path) and format.
#[derive(Debug, Clone)]
pub struct Source {
    pub index: usize,
    pub config: SourceConfig,
    pub files: Vec<ParquetFile>,
}

impl Source {
    /// Resolve the source's path, read every file's footer and check its columns.
    pub fn open(index: usize, config: &SourceConfig) -> Result<Source> {
        let paths = resolve_paths(&config.path)?;
        let format = RowFormat::new(config);
        let files = paths
            .into_iter()
            .map(|p| open_file(p, &format))
            .collect::<Result<Vec<_>>>()?;
        Ok(Source {
            index,
            config: config.clone(),
            files,
        })
    }

    pub fn num_rows(&self) -> u64 {
        self.files.iter().map(|f| f.num_rows).sum()
    }

    /// Every (file, row group) of the source, in file order.
    pub fn units(&self) -> Vec<(usize, usize)> {
        self.files
            .iter()
            .enumerate()
            .flat_map(|(f, file)| (0..file.row_group_rows.len()).map(move |g| (f, g)))
            .filter(|&(f, g)| self.files[f].row_group_rows[g] > 0)
            .collect()
    }

    /// Stream row group `group` of file `file`, starting at row `start` of the group.
    pub fn read_group(&self, file: usize, group: usize, start: usize) -> Result<GroupReader> {
        let f = &self.files[file];
        let reader = f
            .builder()?
            .with_row_groups(vec![group])
            .with_offset(start)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| corrupt(&f.path, group, &e))?;
        Ok(GroupReader {
            source: self.index,
            file_index: file,
            file: f.clone(),
            group,
            next_row: start,
            rows: vec![].into_iter(),
            reader,
            selected: None,
            largest_batch: 0,
        })
    }

    /// Read the given rows (sorted, within row group `group` of `file`): for rebuilding a
    /// shuffle buffer on resume without reading the whole group.
    pub fn read_rows(&self, file: usize, group: usize, rows: &[usize]) -> Result<Vec<Row>> {
        let f = &self.files[file];
        let selection = RowSelection::from_consecutive_ranges(
            rows.iter().map(|&r| r..r + 1),
            f.row_group_rows[group],
        );
        let reader = f
            .builder()?
            .with_row_groups(vec![group])
            .with_row_selection(selection)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| corrupt(&f.path, group, &e))?;
        let mut g = GroupReader {
            source: self.index,
            file_index: file,
            file: f.clone(),
            group,
            next_row: 0,
            rows: vec![].into_iter(),
            reader,
            selected: Some(rows.iter().copied().collect()),
            largest_batch: 0,
        };
        let mut out = Vec::with_capacity(rows.len());
        while let Some(row) = g.next_row()? {
            out.push(row);
        }
        Ok(out)
    }

    /// Every row of the source in file order (files sorted by path, then row groups).
    pub fn rows(&self) -> SourceRows {
        self.clone().into_rows()
    }

    /// [`Source::rows`], consuming the source.
    pub fn into_rows(self) -> SourceRows {
        SourceRows {
            units: self.units().into_iter(),
            source: self,
            current: None,
        }
    }
}

impl ParquetFile {
    fn builder(&self) -> Result<ParquetRecordBatchReaderBuilder<File>> {
        let file = File::open(&*self.path).map_err(|e| {
            DataError::file(
                &*self.path,
                format!("cannot be opened: {e}"),
                "check the file still exists and is readable",
            )
        })?;
        Ok(
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
                .with_projection(self.projection.clone()),
        )
    }
}

/// Streams the rows of one row group, one record batch at a time.
pub struct GroupReader {
    source: usize,
    file_index: usize,
    file: ParquetFile,
    group: usize,
    /// Row (within the group) of the next row to decode, when reading contiguously.
    next_row: usize,
    rows: std::vec::IntoIter<Row>,
    reader: ParquetRecordBatchReader,
    /// With a row selection: the group-relative indices of the selected rows, in order.
    selected: Option<std::collections::VecDeque<usize>>,
    /// The most rows decoded at once (at most [`READ_BATCH_ROWS`]).
    largest_batch: usize,
}

impl GroupReader {
    /// The most rows this reader has decoded at once.
    pub fn largest_batch(&self) -> usize {
        self.largest_batch
    }

    /// The next row, `None` at the end of the group. An `Err` is a file that cannot be read
    /// (corrupt page, I/O error); a bad row is `Ok` with `row.sample` an `Err`.
    pub fn next_row(&mut self) -> Result<Option<Row>> {
        loop {
            if let Some(row) = self.rows.next() {
                return Ok(Some(row));
            }
            let batch = match self.reader.next() {
                None => return Ok(None),
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(corrupt(&self.file.path, self.group, &e)),
            };
            self.largest_batch = self.largest_batch.max(batch.num_rows());
            self.rows = self.decode(&batch).into_iter();
        }
    }

    fn decode(&mut self, batch: &RecordBatch) -> Vec<Row> {
        let view = self.file.bound.view(batch);
        let start = self.file.row_group_start[self.group];
        (0..batch.num_rows())
            .map(|i| {
                let row_in_group = match &mut self.selected {
                    Some(sel) => sel.pop_front().unwrap_or(usize::MAX),
                    None => {
                        self.next_row += 1;
                        self.next_row - 1
                    }
                };
                let loc = Location {
                    path: self.file.path.clone(),
                    source: self.source,
                    file: self.file_index,
                    row_group: self.group,
                    row_in_group,
                    row_in_file: start + row_in_group as u64,
                };
                let sample = view.sample(i, &loc);
                Row { loc, sample }
            })
            .collect()
    }
}

/// Every row of a source, in file order. Stops after the first unreadable file or row group.
pub struct SourceRows {
    source: Source,
    units: std::vec::IntoIter<(usize, usize)>,
    current: Option<GroupReader>,
}

impl Iterator for SourceRows {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        loop {
            if let Some(reader) = &mut self.current {
                match reader.next_row() {
                    Ok(Some(row)) => return Some(Ok(row)),
                    Ok(None) => self.current = None,
                    Err(e) => {
                        self.current = None;
                        self.units = Vec::new().into_iter();
                        return Some(Err(e));
                    }
                }
            }
            let (file, group) = self.units.next()?;
            match self.source.read_group(file, group, 0) {
                Ok(r) => self.current = Some(r),
                Err(e) => {
                    self.units = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Every row of one source in file order, as (location, sample), each on its own: what
/// `loam eval` scores and `loam data preview` shows. With `on_error = skip` bad rows are
/// left out; otherwise a bad row is an error naming its file, row and column.
pub fn eval_samples(
    config: &SourceConfig,
    on_error: OnError,
) -> Result<impl Iterator<Item = Result<(Location, Sample)>>> {
    let rows = Source::open(0, config)?.into_rows();
    Ok(rows.filter_map(move |row| match row {
        Err(e) => Some(Err(e)),
        Ok(Row {
            loc,
            sample: Ok(sample),
        }) => Some(Ok((loc, sample))),
        Ok(Row { sample: Err(e), .. }) if on_error == OnError::Skip && e.is_row_error() => None,
        Ok(Row { sample: Err(e), .. }) => Some(Err(e)),
    }))
}

fn corrupt(path: &Path, group: usize, e: &dyn std::fmt::Display) -> DataError {
    DataError::file(
        path,
        format!("row group {group} cannot be read: {e}"),
        "the file is corrupt or truncated; re-export it (e.g. pyarrow.parquet.write_table) or remove it from the source",
    )
}

/// A source path → its Parquet files, sorted.
pub fn resolve_paths(pattern: &str) -> Result<Vec<PathBuf>> {
    let hint_cwd = || {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "?".into());
        format!("check the path; relative paths are relative to the current directory ({cwd})")
    };
    if pattern.contains(['*', '?', '[']) {
        let paths = glob::glob(pattern).map_err(|e| {
            DataError::file(
                pattern,
                format!("is not a valid glob: {e}"),
                "e.g. data/train-*.parquet",
            )
        })?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::file(pattern, "matches no file", hint_cwd()));
        }
        return Ok(files);
    }
    let path = Path::new(pattern);
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| {
            DataError::file(path, format!("cannot be listed: {e}"), "check permissions")
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::file(
                path,
                "is a directory with no .parquet files",
                "point the source at the directory holding the shards, or at a glob",
            ));
        }
        return Ok(files);
    }
    if !path.exists() {
        return Err(DataError::file(path, "does not exist", hint_cwd()));
    }
    Ok(vec![path.to_path_buf()])
}

/// Read a file's footer and check it has the columns the format needs.
fn open_file(path: PathBuf, format: &RowFormat) -> Result<ParquetFile> {
    let mut file = File::open(&path).map_err(|e| {
        DataError::file(
            &path,
            format!("cannot be opened: {e}"),
            "check the path and its permissions",
        )
    })?;
    check_magic(&mut file, &path)?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
        DataError::file(
            &path,
            format!("has an unreadable Parquet footer: {e}"),
            "the file is corrupt or truncated; re-export it, or remove it from the source",
        )
    })?;
    let schema = meta.schema().clone();
    // Only the columns the format reads are decoded.
    let mut indices = Vec::new();
    for (name, required) in format.columns() {
        match schema.index_of(name) {
            Ok(i) => indices.push(i),
            Err(_) if !required => {}
            // `bind` reports it with the file's column names.
            Err(_) => return Err(crate::format::missing_column(&schema, name, &path)),
        }
    }
    indices.sort_unstable();
    indices.dedup();
    let projected = Schema::new(
        indices
            .iter()
            .map(|&i| schema.field(i).clone())
            .collect::<Vec<_>>(),
    );
    let bound = format.bind(&projected, &path)?;
    let projection = ProjectionMask::roots(meta.parquet_schema(), indices.iter().copied());
    let row_group_rows: Vec<usize> = meta
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows().max(0) as usize)
        .collect();
    let mut row_group_start = Vec::with_capacity(row_group_rows.len());
    let mut total = 0u64;
    for &n in &row_group_rows {
        row_group_start.push(total);
        total += n as u64;
    }
    Ok(ParquetFile {
        path: Arc::new(path),
        meta,
        projection,
        bound,
        row_group_rows,
        row_group_start,
        num_rows: total,
    })
}

/// Parquet files start and end with `PAR1`: tell "not Parquet" from "truncated".
fn check_magic(file: &mut File, path: &Path) -> Result<()> {
    let len = file
        .metadata()
        .map_err(|e| DataError::file(path, format!("cannot be read: {e}"), "check permissions"))?
        .len();
    if len == 0 {
        return Err(DataError::file(
            path,
            "is empty (0 bytes)",
            "the export that wrote it probably failed; re-create it or remove it from the source",
        ));
    }
    let mut head = [0u8; 4];
    let read_head = file.read_exact(&mut head).is_ok();
    if !read_head || &head != b"PAR1" {
        return Err(DataError::file(
            path,
            "is not a Parquet file (it does not start with PAR1)",
            "convert it to Parquet (e.g. pandas.read_json(..).to_parquet(..)), or remove it from the source",
        ));
    }
    let mut tail = [0u8; 4];
    let read_tail =
        len >= 12 && file.seek(SeekFrom::End(-4)).is_ok() && file.read_exact(&mut tail).is_ok();
    if !read_tail || &tail != b"PAR1" {
        return Err(DataError::file(
            path,
            format!("is truncated or corrupt: no Parquet footer at its end ({len} bytes)"),
            "the copy or export was probably cut short; copy or export it again",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::testutil::*;

    fn text_source(path: &Path) -> SourceConfig {
        SourceConfig::new(path.to_str().unwrap(), Format::Text)
    }

    fn texts_of(source: &Source) -> Vec<String> {
        source
            .rows()
            .map(|r| match r.unwrap().sample.unwrap() {
                Sample::Text { text } => text,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn open_err(path: &Path) -> String {
        Source::open(0, &text_source(path)).unwrap_err().to_string()
    }

    #[test]
    fn directory_reads_its_parquet_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("b.parquet"), "b", 2, 10);
        numbered_text(&dir.path().join("a.parquet"), "a", 3, 2);
        std::fs::write(dir.path().join("notes.txt"), "not data").unwrap();
        let source = Source::open(0, &text_source(dir.path())).unwrap();
        assert_eq!(source.files.len(), 2);
        assert_eq!(source.num_rows(), 5);
        assert_eq!(source.units(), vec![(0, 0), (0, 1), (1, 0)]);
        assert_eq!(texts_of(&source), ["a0", "a1", "a2", "b0", "b1"]);
    }

    #[test]
    fn glob_reads_matching_shards_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        numbered_text(&dir.path().join("train-00001.parquet"), "y", 2, 10);
        numbered_text(&dir.path().join("train-00000.parquet"), "x", 2, 10);
        numbered_text(&dir.path().join("eval-00000.parquet"), "e", 2, 10);
        let glob = dir.path().join("train-*.parquet");
        let source = Source::open(0, &text_source(&glob)).unwrap();
        assert_eq!(texts_of(&source), ["x0", "x1", "y0", "y1"]);
        let err = open_err(&dir.path().join("none-*.parquet"));
        assert!(
            err.contains("none-*.parquet") && err.contains("matches no file"),
            "{err}"
        );
    }

    #[test]
    fn rows_stream_by_row_group_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * READ_BATCH_ROWS + 500;
        let p = numbered_text(&dir.path().join("big.parquet"), "r", n, 2 * READ_BATCH_ROWS);
        let source = Source::open(0, &text_source(&p)).unwrap();
        assert_eq!(
            source.files[0].row_group_rows,
            vec![2 * READ_BATCH_ROWS, READ_BATCH_ROWS + 500]
        );
        // One row group at a time, decoded at most READ_BATCH_ROWS rows at once.
        let mut seen = 0;
        for (f, g) in source.units() {
            let mut reader = source.read_group(f, g, 0).unwrap();
            while let Some(row) = reader.next_row().unwrap() {
                assert_eq!(row.loc.row_in_file, seen as u64);
                seen += 1;
            }
            assert!(reader.largest_batch() <= READ_BATCH_ROWS);
        }
        assert_eq!(seen, n);
        // Starting inside a group skips to the row.
        let mut reader = source.read_group(0, 1, 7).unwrap();
        let row = reader.next_row().unwrap().unwrap();
        assert_eq!(
            (row.loc.row_group, row.loc.row_in_group, row.loc.row_in_file),
            (1, 7, 2 * READ_BATCH_ROWS as u64 + 7)
        );
        assert_eq!(
            row.sample.unwrap(),
            Sample::Text {
                text: format!("r{}", 2 * READ_BATCH_ROWS + 7)
            }
        );
        // Picking single rows reads only those.
        let rows = source.read_rows(0, 0, &[3, 1000, 2047]).unwrap();
        let got: Vec<(usize, Sample)> = rows
            .into_iter()
            .map(|r| (r.loc.row_in_group, r.sample.unwrap()))
            .collect();
        assert_eq!(
            got,
            [3, 1000, 2047]
                .map(|i| (
                    i,
                    Sample::Text {
                        text: format!("r{i}")
                    }
                ))
                .to_vec()
        );
    }

    #[test]
    fn only_the_needed_columns_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("wide.parquet"),
            vec![
                texts("id", &["1"]),
                texts("text", &["hello"]),
                texts("meta", &["x"]),
            ],
            10,
        );
        let source = Source::open(0, &text_source(&p)).unwrap();
        let mut reader = source.read_group(0, 0, 0).unwrap();
        let row = reader.next_row().unwrap().unwrap();
        assert_eq!(
            row.sample.unwrap(),
            Sample::Text {
                text: "hello".into()
            }
        );
        let f = &source.files[0];
        let schema = f.meta.parquet_schema();
        let read: Vec<bool> = (0..schema.num_columns())
            .map(|i| f.projection.leaf_included(i))
            .collect();
        assert_eq!(read, [false, true, false]);
    }

    // --- bad files: each message names the file and says what to do ---

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_err(&dir.path().join("nope.parquet"));
        assert!(err.contains("nope.parquet: does not exist"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }

    #[test]
    fn empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.parquet");
        std::fs::write(&p, b"").unwrap();
        let err = open_err(&p);
        assert!(err.contains("empty.parquet: is empty (0 bytes)"), "{err}");
    }

    #[test]
    fn empty_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_err(dir.path());
        assert!(err.contains("no .parquet files"), "{err}");
    }

    #[test]
    fn non_parquet_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.parquet");
        std::fs::write(&p, "{\"text\": \"a jsonl file\"}\n").unwrap();
        let err = open_err(&p);
        assert!(err.contains("data.parquet: is not a Parquet file"), "{err}");
        assert!(err.contains("convert it to Parquet"), "{err}");
    }

    #[test]
    fn truncated_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = numbered_text(&dir.path().join("cut.parquet"), "r", 100, 10);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = open_err(&p);
        assert!(
            err.contains("cut.parquet: is truncated or corrupt"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_footer_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = numbered_text(&dir.path().join("bad.parquet"), "r", 100, 10);
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        // Keep the magic bytes, garble the footer's metadata.
        for b in &mut bytes[n - 40..n - 8] {
            *b = 0xff;
        }
        std::fs::write(&p, &bytes).unwrap();
        let err = open_err(&p);
        assert!(err.contains("bad.parquet"), "{err}");
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn corrupt_data_pages_are_an_error_naming_the_file_and_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let p = numbered_text(&dir.path().join("pages.parquet"), "row number ", 2000, 500);
        let mut bytes = std::fs::read(&p).unwrap();
        // Garble the data just after the header of the first page.
        for b in &mut bytes[40..400] {
            *b = 0xee;
        }
        std::fs::write(&p, &bytes).unwrap();
        let source = Source::open(0, &text_source(&p)).unwrap();
        let results: Vec<Result<Row>> = source.rows().collect();
        let err = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("a garbled page is an error, not garbage rows")
            .to_string();
        assert!(
            err.contains("pages.parquet") && err.contains("row group 0"),
            "{err}"
        );
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn missing_column_is_named_with_the_file_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_parquet(
            &dir.path().join("cols.parquet"),
            vec![texts("txt", &["a"]), texts("id", &["1"])],
            10,
        );
        let err = open_err(&p);
        for part in [
            "cols.parquet",
            "has no column `text`",
            "did you mean `txt`",
            "txt, id",
        ] {
            assert!(err.contains(part), "`{part}` missing from: {err}");
        }
    }
}
