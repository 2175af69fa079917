//! Inline SVG pictures: an area's bitmap (model, kernel, difference), the pages of a buffer
//! by mapping kind and memory type, and line charts of the campaign's figures. Plain SVG
//! elements only (no script, no external reference), each picture self-contained.

use super::esc;
use reference_impl::observation::{AreaObservation, MapKind, MemType};
use std::fmt::Write;

/// Pixels across of every bitmap and page picture.
const WIDTH: f64 = 640.0;

/// The colour of a memory type, also used by the legend.
pub fn mem_colour(m: MemType) -> &'static str {
    match m {
        MemType::Wb => "#2e7d32",
        MemType::Nc => "#ef6c00",
        MemType::So => "#c62828",
        MemType::Dev => "#6a1b9a",
    }
}

/// Bits per row of a bitmap picture with `bits` bits: 128, more for big areas so a picture
/// stays under ~64 rows.
fn columns(bits: u64) -> u64 {
    let mut c = 128;
    while bits.div_ceil(c) > 64 {
        c *= 2;
    }
    c
}

/// Run-length rows of the bits `f(i)` is true for, `i < bits`, as `<rect>`s of one colour in a
/// `cols`-wide grid of unit cells.
fn bit_rects(s: &mut String, bits: u64, cols: u64, colour: &str, f: &dyn Fn(u64) -> bool) {
    let rows = bits.div_ceil(cols);
    for r in 0..rows {
        let mut c = 0;
        while c < cols && r * cols + c < bits {
            if !f(r * cols + c) {
                c += 1;
                continue;
            }
            let start = c;
            while c < cols && r * cols + c < bits && f(r * cols + c) {
                c += 1;
            }
            let _ = write!(s, r#"<rect x="{start}" y="{r}" width="{}" height="1" fill="{colour}"/>"#, c - start);
        }
    }
}

/// One bitmap picture: a grid of `bits` cells, the set ones drawn in `colour` (and, for a
/// difference, the second set in `colour2`).
fn grid(label: &str, class: &str, bits: u64, layers: &[(&str, &dyn Fn(u64) -> bool)]) -> String {
    let cols = columns(bits.max(1));
    let rows = bits.div_ceil(cols).max(1);
    let cell = WIDTH / cols as f64;
    let h = (rows as f64 * cell).max(6.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<figure class="bitmap {class}"><figcaption>{}</figcaption><svg class="bitmap-svg" data-bits="{bits}" width="{WIDTH}" height="{h:.1}" viewBox="0 0 {cols} {rows}" preserveAspectRatio="none"><rect x="0" y="0" width="{}" height="{rows}" fill="#eceff1"/>"##,
        esc(label),
        cols.min(bits.max(1)),
    );
    for (colour, f) in layers {
        bit_rects(&mut s, bits, cols, colour, *f);
    }
    s.push_str("</svg></figure>");
    s
}

/// The model's, the kernel's and the difference of one area's bitmap (either side may be
/// missing: a model-only replay, an area one side does not have).
pub fn area_bitmaps(name: &str, model: Option<&AreaObservation>, kernel: Option<&AreaObservation>) -> String {
    let bits = model.map_or(0, AreaObservation::bitmap_bits).max(kernel.map_or(0, AreaObservation::bitmap_bits));
    let mut s = String::new();
    let _ = write!(s, r#"<div class="area" data-area="{}"><h4>area {}"#, esc(name), esc(name));
    if let Some(a) = kernel.or(model) {
        let _ = write!(s, " <small>{}, order_per_bit {}, {bits} bits</small>", esc(&a.extent_text()), a.order_per_bit);
    }
    s.push_str("</h4>");
    if let Some(m) = model {
        let used = m.used_bits();
        s.push_str(&grid(&format!("model: {used} bits used"), "model", bits, &[("#1565c0", &|i| m.bit(i))]));
    }
    if let Some(k) = kernel {
        let used = k.used_bits();
        s.push_str(&grid(&format!("kernel: {used} bits used"), "kernel", bits, &[("#37474f", &|i| k.bit(i))]));
    }
    if let (Some(m), Some(k)) = (model, kernel) {
        let n = (0..bits).filter(|&i| m.bit(i) != k.bit(i)).count();
        let label = format!("difference: {n} bits (blue: model only, red: kernel only)");
        let model_only = |i| m.bit(i) && !k.bit(i);
        let kernel_only = |i| k.bit(i) && !m.bit(i);
        s.push_str(&grid(&label, "diff", bits, &[("#1565c0", &model_only), ("#c62828", &kernel_only)]));
    }
    s.push_str("</div>");
    s
}

/// What maps one page: (kind, memory type) pairs.
pub type PageMaps = Vec<(MapKind, MemType)>;

const KINDS: [MapKind; 4] = [MapKind::Lin, MapKind::Vmap, MapKind::Pkmap, MapKind::Fixmap];

/// A buffer's pages (`pages[i]`: what maps page `i`, per side) as rows per side and mapping
/// kind, each cell coloured by the memory type.
pub fn buffer_maps(label: &str, model: Option<&[PageMaps]>, kernel: Option<&[PageMaps]>) -> String {
    let n = model.map_or(0, <[PageMaps]>::len).max(kernel.map_or(0, <[PageMaps]>::len)) as u64;
    let sides: Vec<(&str, &[PageMaps])> =
        [("model", model), ("kernel", kernel)].into_iter().filter_map(|(l, p)| p.map(|p| (l, p))).collect();
    let rows = sides.len() * KINDS.len();
    let label_w = 110.0;
    let cell = ((WIDTH - label_w) / n.max(1) as f64).min(24.0);
    let row_h = 14.0;
    let h = rows as f64 * row_h + 4.0;
    let w = label_w + cell * n as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="pagemap"><figcaption>{}</figcaption><svg class="pagemap-svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.1} {h:.1}">"#,
        esc(label)
    );
    let mut row = 0;
    for (side, pages) in &sides {
        for kind in KINDS {
            let y = row as f64 * row_h;
            let _ = write!(
                s,
                r##"<text x="2" y="{:.1}" font-size="10" fill="#263238">{side} {}</text>"##,
                y + 10.0,
                kind.name()
            );
            let _ = write!(
                s,
                r##"<rect x="{label_w}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#eceff1"/>"##,
                cell * n as f64,
                row_h - 2.0
            );
            for (i, p) in pages.iter().enumerate() {
                for (k, mem) in p {
                    if *k != kind {
                        continue;
                    }
                    let _ = write!(
                        s,
                        r#"<rect x="{:.2}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}"><title>page {i}: {} {}</title></rect>"#,
                        label_w + cell * i as f64,
                        (cell - 0.5).max(0.5),
                        row_h - 2.0,
                        mem_colour(*mem),
                        kind.name(),
                        mem.name()
                    );
                }
            }
            row += 1;
        }
    }
    s.push_str("</svg></figure>");
    s
}

/// The memory types' colour legend.
pub fn legend() -> String {
    let mut s = String::from(r#"<p class="legend">"#);
    for m in [MemType::Wb, MemType::Nc, MemType::So, MemType::Dev] {
        let _ = write!(
            s,
            r#"<svg width="12" height="12"><rect width="12" height="12" fill="{}"/></svg> {} "#,
            mem_colour(m),
            m.name()
        );
    }
    s.push_str(r##"<svg width="12" height="12"><rect width="12" height="12" fill="#eceff1"/></svg> not mapped (highmem pages have no linear map)</p>"##);
    s
}

/// A line chart of `points` (x: seconds, y: the figure).
pub fn line_chart(title: &str, points: &[(f64, f64)]) -> String {
    let (w, h, pad) = (300.0, 140.0, 30.0);
    let xmax = points.iter().map(|p| p.0).fold(0.0_f64, f64::max).max(1.0);
    let ymax = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1.0);
    let x = |v: f64| pad + v / xmax * (w - pad - 8.0);
    let y = |v: f64| h - pad + 10.0 - v / ymax * (h - pad - 10.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<figure class="chart"><figcaption>{}</figcaption><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}"><line x1="{pad}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#90a4ae"/><line x1="{pad}" y1="10" x2="{pad}" y2="{:.1}" stroke="#90a4ae"/>"##,
        esc(title),
        y(0.0),
        w - 8.0,
        y(0.0),
        y(0.0)
    );
    let _ = write!(s, r##"<text x="2" y="14" font-size="9" fill="#455a64">{}</text>"##, fmt_num(ymax));
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{h}" font-size="9" fill="#455a64" text-anchor="end">{} s</text>"##,
        w - 8.0,
        fmt_num(xmax)
    );
    if points.len() == 1 {
        let (px, py) = (x(points[0].0), y(points[0].1));
        let _ = write!(s, r##"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="#1565c0"/>"##);
    } else if !points.is_empty() {
        let path: Vec<String> = points.iter().map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(b))).collect();
        let _ =
            write!(s, r##"<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{}"/>"##, path.join(" "));
    }
    s.push_str("</svg></figure>");
    s
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_impl::units::{Pages, Pfn};

    fn area(bitmap: Vec<u32>) -> AreaObservation {
        AreaObservation::single("reserved", Pfn(0x7e000), Pages(64), 0, bitmap)
    }

    #[test]
    fn a_bitmap_picture_draws_one_rect_per_run_and_the_difference_only_where_sides_differ() {
        let m = area(vec![0b0000_1111, 0]);
        let k = area(vec![0b0011_1111, 0]);
        let s = area_bitmaps("reserved", Some(&m), Some(&k));
        assert_eq!(s.matches("<svg").count(), 3, "{s}");
        // Model: one run of 4 bits; kernel: one of 6; difference: the 2 kernel-only bits.
        assert!(s.contains(r##"<rect x="0" y="0" width="4" height="1" fill="#1565c0"/>"##), "{s}");
        assert!(s.contains(r##"<rect x="0" y="0" width="6" height="1" fill="#37474f"/>"##), "{s}");
        assert!(s.contains(r##"<rect x="4" y="0" width="2" height="1" fill="#c62828"/>"##), "{s}");
        assert!(s.contains("difference: 2 bits"), "{s}");
    }

    #[test]
    fn big_areas_get_wider_rows() {
        assert_eq!(columns(64), 128);
        assert_eq!(columns(8192), 128);
        assert_eq!(columns(8193), 256);
        assert!(65536u64.div_ceil(columns(65536)) <= 64);
    }

    #[test]
    fn page_pictures_colour_each_page_by_its_memory_type() {
        let k: Vec<PageMaps> = vec![vec![(MapKind::Lin, MemType::Nc)], vec![(MapKind::Pkmap, MemType::Wb)]];
        let s = buffer_maps("h0", None, Some(&k));
        assert!(s.contains("page 0: lin nc"), "{s}");
        assert!(s.contains("page 1: pkmap wb"), "{s}");
        assert!(s.contains(mem_colour(MemType::Nc)));
        assert!(!s.contains("model lin"), "no model rows without a model side: {s}");
    }
}
