//! Memory stays flat however large the data: streaming a file 4× larger peaks at about the
//! same heap. A test binary of its own, so the counting allocator sees only this test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use loam_data::stream::{BatchStream, EncodeOptions, Split};
use loam_data::{DataConfig, Example, Format, Sample, SourceConfig};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `groups` row groups of 2,000 rows of ~500 bytes, written one group at a time.
fn write_file(path: &Path, groups: usize) {
    let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(2000))
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    for g in 0..groups {
        let rows: Vec<String> = (0..2000)
            .map(|i| format!("{g}-{i} {}", "lorem ipsum dolor sit amet ".repeat(18)))
            .collect();
        let column: ArrayRef = Arc::new(StringArray::from(rows));
        writer
            .write(&RecordBatch::try_new(schema.clone(), vec![column]).unwrap())
            .unwrap();
        writer.flush().unwrap();
    }
    writer.close().unwrap();
}

fn bytes(sample: &Sample, _: &EncodeOptions) -> anyhow::Result<Example> {
    let Sample::Text { text } = sample else {
        anyhow::bail!("text only")
    };
    let ids: Vec<u32> = text.bytes().map(u32::from).collect();
    let labels = ids.iter().map(|&i| i as i64).collect();
    Ok(Example {
        input_ids: ids,
        labels,
        rejected_start: None,
    })
}

/// Peak heap above the baseline while streaming one epoch of `path`, and the rows seen.
fn stream_peak(path: &Path) -> (usize, u64) {
    let mut source = SourceConfig::new(path.to_str().unwrap(), Format::Text);
    source.add_eos = false;
    let cfg = DataConfig {
        seq_len: 1024,
        shuffle_buffer: 256,
        train: vec![source],
        ..DataConfig::default()
    };
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut stream = BatchStream::new(&cfg, Split::Train, 1, 0, 1, bytes)
        .unwrap()
        .with_epochs(1);
    while stream.next_batch(8).unwrap().is_some() {}
    let rows = stream.stats().rows_read;
    drop(stream);
    (PEAK.load(Ordering::Relaxed) - base, rows)
}

#[test]
fn peak_memory_does_not_grow_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.parquet");
    let large = dir.path().join("large.parquet");
    write_file(&small, 5);
    write_file(&large, 20);
    let (small_peak, small_rows) = stream_peak(&small);
    let (large_peak, large_rows) = stream_peak(&large);
    assert_eq!((small_rows, large_rows), (10_000, 40_000));
    let small_mb = std::fs::metadata(&small).unwrap().len() as f64 / 1e6;
    let large_mb = std::fs::metadata(&large).unwrap().len() as f64 / 1e6;
    eprintln!(
        "{small_mb:.1} MB file: peak {:.1} MB heap; {large_mb:.1} MB file: peak {:.1} MB heap",
        small_peak as f64 / 1e6,
        large_peak as f64 / 1e6
    );
    assert!(
        (large_peak as f64) < 1.25 * small_peak as f64,
        "peak heap grew with the file: {small_peak} → {large_peak} bytes"
    );
}
