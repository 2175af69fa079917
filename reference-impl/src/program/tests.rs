use super::*;
use crate::units::Pfn;
use proptest::prelude::*;

fn parse_ok(text: &str) -> Program {
    match Program::parse(text) {
        Ok(p) => p,
        Err(e) => panic!("{text:?} did not parse: {e}"),
    }
}

fn parse_err(text: &str) -> ParseError {
    match Program::parse(text) {
        Ok(p) => panic!("{text:?} parsed as {p:?}"),
        Err(e) => e,
    }
}

fn reserved(n: u32) -> AreaRef {
    if n == u32::MAX {
        AreaRef::Name("reserved".into())
    } else {
        AreaRef::Index(n)
    }
}

#[test]
fn parse_reads_the_documented_example() {
    let p = parse_ok(
        "cma_alloc area=reserved count=16 align=4      # align defaults to 0\n\
         cma_release h=0\n\
         cma_release_raw area=reserved off=100 count=4\n\
         dma_alloc size=65536 attrs=wc,nokmap gfp=atomic   # attrs optional\n\
         dma_free h=1\n\
         observe\n",
    );
    assert_eq!(
        p.ops,
        vec![
            Op::CmaAlloc { area: reserved(u32::MAX), count: Pages(16), align: Order(4) },
            Op::CmaRelease { h: Handle(0) },
            Op::CmaReleaseRaw { area: reserved(u32::MAX), off: 100, count: Pages(4) },
            Op::DmaAlloc { size: Bytes(65536), attrs: DmaAttrs { wc: true, nokmap: true }, gfp: Gfp::Atomic },
            Op::DmaFree { h: Handle(1) },
            Op::Observe,
        ]
    );
}

#[test]
fn parse_applies_defaults_for_align_attrs_and_gfp() {
    let p = parse_ok("cma_alloc count=1 area=reserved\ndma_alloc size=4096\ndma_alloc size=1 attrs=none");
    assert_eq!(
        p.ops,
        vec![
            Op::CmaAlloc { area: reserved(u32::MAX), count: Pages(1), align: Order(0) },
            Op::DmaAlloc { size: Bytes(4096), attrs: DmaAttrs::default(), gfp: Gfp::Kernel },
            Op::DmaAlloc { size: Bytes(1), attrs: DmaAttrs::default(), gfp: Gfp::Kernel },
        ]
    );
}

#[test]
fn parse_reads_hex_numbers_size_suffixes_and_negative_offsets() {
    let p = parse_ok(
        "cma_alloc area=0 count=0x10 align=0XC\ndma_alloc size=4K\ndma_alloc size=1M\n\
         cma_release_raw area=linux,cma off=-0x10 count=0\ncma_release_raw area=1 off=-9223372036854775808 count=1",
    );
    assert_eq!(
        p.ops,
        vec![
            Op::CmaAlloc { area: AreaRef::Index(0), count: Pages(16), align: Order(12) },
            Op::DmaAlloc { size: Bytes(4096), attrs: DmaAttrs::default(), gfp: Gfp::Kernel },
            Op::DmaAlloc { size: Bytes(1 << 20), attrs: DmaAttrs::default(), gfp: Gfp::Kernel },
            Op::CmaReleaseRaw { area: AreaRef::Name("linux,cma".into()), off: -16, count: Pages(0) },
            Op::CmaReleaseRaw { area: AreaRef::Index(1), off: i64::MIN, count: Pages(1) },
        ]
    );
}

#[test]
fn parse_ignores_comments_blank_lines_and_carriage_returns() {
    let p = parse_ok("# a program\r\n\r\n   \n\tobserve # look\r\n#observe\n");
    assert_eq!(p.ops, vec![Op::Observe]);
}

#[test]
fn to_text_spells_every_argument_in_decimal() {
    let p = parse_ok("dma_alloc size=4K\ncma_alloc count=0x10 area=linux,cma\ncma_release_raw area=3 off=-1 count=2");
    assert_eq!(
        p.to_text(),
        "dma_alloc size=4096 attrs=none gfp=kernel\n\
         cma_alloc area=linux,cma count=16 align=0\n\
         cma_release_raw area=3 off=-1 count=2\n"
    );
}

#[test]
fn parse_reads_pin_and_unpin_with_signed_offsets_and_neither_defines_a_handle() {
    let p =
        parse_ok("pin area=reserved off=65\nunpin off=-0x10 area=0\ncma_alloc area=reserved count=1\ncma_release h=0");
    assert_eq!(
        p.ops,
        vec![
            Op::Pin { area: reserved(u32::MAX), off: 65 },
            Op::Unpin { area: AreaRef::Index(0), off: -16 },
            Op::CmaAlloc { area: reserved(u32::MAX), count: Pages(1), align: Order(0) },
            Op::CmaRelease { h: Handle(0) },
        ]
    );
    assert_eq!(
        p.to_text().lines().take(2).collect::<Vec<_>>(),
        vec!["pin area=reserved off=65", "unpin area=0 off=-16"]
    );
    let r = match p.resolve(&areas()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.ops[0], ResolvedOp::Pin { area: AreaId(1), off: 65 });
    assert_eq!(r.ops[1], ResolvedOp::Unpin { area: AreaId(0), off: -16 });
    assert_eq!(r.ops[2], ResolvedOp::CmaAlloc { area: AreaId(1), h: Handle(0), count: Pages(1), align: Order(0) });
}

#[test]
fn parse_errors_for_pin_name_the_missing_or_unknown_key() {
    let e = parse_err("pin area=reserved");
    assert_eq!((e.line, e.col), (1, 1));
    assert!(e.msg.contains("pin needs off="), "{}", e.msg);
    let e = parse_err("unpin area=reserved off=1 count=1");
    assert_eq!((e.line, e.col), (1, 27));
    assert!(e.msg.contains("unknown key `count` for unpin"), "{}", e.msg);
    let e = parse_err("pin area=reserved off=9223372036854775808");
    assert_eq!((e.line, e.col), (1, 23));
}

#[test]
fn pin_and_unpin_round_trip_through_json() {
    let p = Program::from_json(r#"{"ops":[{"op":"pin","area":"reserved","off":97},{"op":"unpin","area":0,"off":-1}]}"#);
    let p = match p {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        p.ops,
        vec![Op::Pin { area: reserved(u32::MAX), off: 97 }, Op::Unpin { area: AreaRef::Index(0), off: -1 }]
    );
    assert_eq!(Program::from_json(&p.to_json()), Ok(p.clone()));
    assert_eq!(Program::parse(&p.to_text()), Ok(p));
    let e = Program::from_json(r#"{"ops":[{"op":"pin","area":"1x y","off":0}]}"#);
    assert!(matches!(e, Err(ParseError { line: 0, col: 0, ref msg }) if msg.contains("area")), "{e:?}");
}

#[test]
fn parse_error_display_names_line_and_column() {
    let e = ParseError { line: 3, col: 7, msg: "bad".into() };
    assert_eq!(e.to_string(), "line 3, column 7: bad");
}

#[test]
fn parse_error_for_unknown_op_points_at_the_op() {
    let e = parse_err("observe\n  cma_free h=0");
    assert_eq!((e.line, e.col), (2, 3));
    assert!(e.msg.contains("unknown op `cma_free`"), "{}", e.msg);
}

#[test]
fn parse_error_for_unknown_key_points_at_the_token() {
    let e = parse_err("cma_alloc area=reserved count=1 size=4");
    assert_eq!((e.line, e.col), (1, 33));
    assert!(e.msg.contains("unknown key `size`"), "{}", e.msg);
}

#[test]
fn parse_error_for_duplicate_key_points_at_the_second_one() {
    let e = parse_err("cma_alloc area=reserved count=1 count=2");
    assert_eq!((e.line, e.col), (1, 33));
    assert!(e.msg.contains("duplicate key `count`"), "{}", e.msg);
}

#[test]
fn parse_error_for_missing_key_points_at_the_op() {
    let e = parse_err("\n\n    cma_alloc area=reserved");
    assert_eq!((e.line, e.col), (3, 5));
    assert!(e.msg.contains("needs count="), "{}", e.msg);
}

#[test]
fn parse_error_for_bad_value_points_at_the_value() {
    let e = parse_err("cma_alloc area=reserved count=12x");
    assert_eq!((e.line, e.col), (1, 31));
    assert!(e.msg.contains("not a number"), "{}", e.msg);
    let e = parse_err("cma_alloc area=reserved count=1 align=32");
    assert_eq!((e.line, e.col), (1, 39));
    let e = parse_err("cma_alloc area=reserved count=0x100000000");
    assert_eq!((e.line, e.col), (1, 31));
    let e = parse_err("dma_alloc size=1025M");
    assert_eq!((e.line, e.col), (1, 16));
    let e = parse_err("dma_free h=4096");
    assert_eq!((e.line, e.col), (1, 12));
    let e = parse_err("cma_release_raw area=reserved off=9223372036854775808 count=1");
    assert_eq!((e.line, e.col), (1, 35));
    let e = parse_err("cma_alloc area=99999999999 count=1");
    assert_eq!((e.line, e.col), (1, 16));
}

#[test]
fn parse_error_for_bad_attrs_and_gfp() {
    for bad in ["attrs=wc,wc", "attrs=wc,", "attrs=none,wc", "attrs=coherent", "gfp=nowait"] {
        let e = parse_err(&format!("dma_alloc size=1 {bad}"));
        assert_eq!((e.line, e.col), (1, 18 + bad.find('=').unwrap_or(0) + 1), "{bad}: {e}");
    }
}

#[test]
fn parse_error_for_a_token_without_equals_or_an_empty_value() {
    let e = parse_err("cma_release 0");
    assert_eq!((e.line, e.col), (1, 13));
    let e = parse_err("cma_release h=");
    assert_eq!((e.line, e.col), (1, 15));
    let e = parse_err("observe =3");
    assert_eq!((e.line, e.col), (1, 9));
    let e = parse_err("observe h=1");
    assert!(e.msg.contains("expected no arguments"), "{}", e.msg);
}

#[test]
fn parse_columns_count_characters_not_bytes() {
    let e = parse_err("cma_alloc area=réservé count=1 bogus");
    assert_eq!((e.line, e.col), (1, 32));
}

#[test]
fn parse_rejects_more_than_4096_ops() {
    let ok = "observe\n".repeat(MAX_OPS);
    assert_eq!(parse_ok(&ok).ops.len(), MAX_OPS);
    let e = parse_err(&format!("{ok}# still fine\n  observe\n"));
    assert_eq!((e.line, e.col), (MAX_OPS + 2, 3));
}

#[test]
fn from_json_reads_defaults_and_round_trips() {
    let p = Program::from_json(
        r#"{"ops":[{"op":"cma_alloc","area":"reserved","count":3},{"op":"dma_alloc","size":4096},{"op":"cma_release_raw","area":0,"off":-2,"count":1},{"op":"observe"}]}"#,
    );
    let p = match p {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(p.ops[0], Op::CmaAlloc { area: reserved(u32::MAX), count: Pages(3), align: Order(0) });
    assert_eq!(p.ops[1], Op::DmaAlloc { size: Bytes(4096), attrs: DmaAttrs::default(), gfp: Gfp::Kernel });
    assert_eq!(p.ops[2], Op::CmaReleaseRaw { area: AreaRef::Index(0), off: -2, count: Pages(1) });
    assert_eq!(Program::from_json(&p.to_json()), Ok(p));
}

#[test]
fn from_json_rejects_unknown_fields_with_a_position() {
    let e = Program::from_json("{\"ops\":[\n{\"op\":\"cma_release\",\"h\":1,\"x\":1}]}");
    let e = match e {
        Ok(p) => panic!("accepted {p:?}"),
        Err(e) => e,
    };
    assert_eq!(e.line, 2);
    assert!(e.col > 0);
}

#[test]
fn from_json_applies_the_text_bounds() {
    for (json, what) in [
        (r#"{"ops":[{"op":"cma_alloc","area":"reserved","count":1,"align":32}]}"#, "align"),
        (r#"{"ops":[{"op":"cma_alloc","area":"123","count":1}]}"#, "area"),
        (r#"{"ops":[{"op":"cma_alloc","area":"a b","count":1}]}"#, "area"),
        (r#"{"ops":[{"op":"dma_alloc","size":1073741825}]}"#, "size"),
        (r#"{"ops":[{"op":"dma_free","h":4096}]}"#, "h"),
    ] {
        match Program::from_json(json) {
            Ok(p) => panic!("accepted {p:?}"),
            Err(e) => {
                assert_eq!((e.line, e.col), (0, 0));
                assert!(e.msg.starts_with("op 0: ") && e.msg.contains(what), "{e}");
            }
        }
    }
}

fn areas() -> Vec<AreaObservation> {
    let area = |name: &str, base| AreaObservation::single(name, Pfn(base), Pages(1024), 0, vec![0; 32]);
    vec![area("linux,cma", 0x60000), area("reserved", 0x7e000)]
}

#[test]
fn resolve_maps_names_and_numbers_every_allocation() {
    let p = parse_ok(
        "dma_alloc size=1\ncma_alloc area=reserved count=1\ncma_release h=1\n\
         cma_alloc area=0 count=1\ncma_release_raw area=linux,cma off=0 count=1\ndma_free h=0\nobserve",
    );
    let r = match p.resolve(&areas()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        r.ops,
        vec![
            ResolvedOp::DmaAlloc { h: Handle(0), size: Bytes(1), attrs: DmaAttrs::default(), gfp: Gfp::Kernel },
            ResolvedOp::CmaAlloc { area: AreaId(1), h: Handle(1), count: Pages(1), align: Order(0) },
            ResolvedOp::CmaRelease { h: Handle(1) },
            ResolvedOp::CmaAlloc { area: AreaId(0), h: Handle(2), count: Pages(1), align: Order(0) },
            ResolvedOp::CmaReleaseRaw { area: AreaId(0), off: 0, count: Pages(1) },
            ResolvedOp::DmaFree { h: Handle(0) },
            ResolvedOp::Observe,
        ]
    );
}

#[test]
fn resolve_rejects_unknown_names_and_indices_out_of_range() {
    let e = parse_ok("observe\ncma_alloc area=hugetlb0 count=1").resolve(&areas());
    assert!(
        matches!(&e, Err(ResolveError { op_index: 1, msg }) if msg.contains("hugetlb0") && msg.contains("reserved"))
    );
    let e = parse_ok("cma_release_raw area=2 off=0 count=1").resolve(&areas());
    assert!(matches!(&e, Err(ResolveError { op_index: 0, msg }) if msg.contains("index 2")));
}

#[test]
fn resolve_rejects_programs_longer_than_the_driver_runs() {
    let p = Program { ops: vec![Op::Observe; MAX_OPS + 1] };
    assert!(matches!(p.resolve(&areas()), Err(ResolveError { op_index: MAX_OPS, .. })));
}

fn area_ref() -> impl Strategy<Value = AreaRef> {
    prop_oneof![
        any::<u32>().prop_map(AreaRef::Index),
        "[a-z][a-z0-9,._-]{0,12}".prop_map(AreaRef::Name),
        "[0-9]{1,3}[a-z,]{1,3}".prop_map(AreaRef::Name),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let attrs = (any::<bool>(), any::<bool>()).prop_map(|(wc, nokmap)| DmaAttrs { wc, nokmap });
    let gfp = prop_oneof![Just(Gfp::Kernel), Just(Gfp::Atomic)];
    prop_oneof![
        (area_ref(), 0..=MAX_COUNT, 0..=MAX_ALIGN).prop_map(|(area, c, a)| Op::CmaAlloc {
            area,
            count: Pages(c),
            align: Order(a)
        }),
        (0..MAX_HANDLES).prop_map(|h| Op::CmaRelease { h: Handle(h) }),
        (area_ref(), any::<i64>(), 0..=MAX_COUNT).prop_map(|(area, off, c)| Op::CmaReleaseRaw {
            area,
            off,
            count: Pages(c)
        }),
        (0..=MAX_DMA_SIZE, attrs, gfp).prop_map(|(s, attrs, gfp)| Op::DmaAlloc { size: Bytes(s), attrs, gfp }),
        (0..MAX_HANDLES).prop_map(|h| Op::DmaFree { h: Handle(h) }),
        (area_ref(), any::<i64>()).prop_map(|(area, off)| Op::Pin { area, off }),
        (area_ref(), any::<i64>()).prop_map(|(area, off)| Op::Unpin { area, off }),
        (area_ref(), any::<i64>()).prop_map(|(area, off)| Op::Kmap { area, off }),
        (0..MAX_HANDLES, prop_oneof![Just(DmaDir::Bidirectional), Just(DmaDir::ToDevice), Just(DmaDir::FromDevice)])
            .prop_map(|(h, dir)| Op::DmaMap { h: Handle(h), dir }),
        Just(Op::Observe),
    ]
}

proptest! {
    #[test]
    fn parse_of_to_text_is_the_identity(ops in proptest::collection::vec(op(), 0..40)) {
        let p = Program { ops };
        prop_assert_eq!(Program::parse(&p.to_text()), Ok(p.clone()));
        prop_assert_eq!(Program::from_json(&p.to_json()), Ok(p));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "(?s).{0,200}") {
        let _ = Program::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_op_like_text(
        lines in proptest::collection::vec(
            "(cma_alloc|cma_release|cma_release_raw|dma_alloc|dma_free|pin|unpin|observe|x)( [a-z]{1,6}=[-0-9a-zA-Z,x]{0,12}){0,4}",
            0..8,
        )
    ) {
        let text = lines.join("\n");
        if let Ok(p) = Program::parse(&text) {
            prop_assert_eq!(Program::parse(&p.to_text()), Ok(p));
        }
    }
}

#[test]
fn dma_map_reads_every_direction_defaults_to_bidirectional_and_defines_no_handle() {
    let p = parse_ok(
        "dma_alloc size=8192\ndma_map h=0 dir=to_device\ndma_map h=0 dir=from_device\ndma_map h=0\n\
         cma_alloc area=reserved count=2\n",
    );
    assert_eq!(p.ops[1], Op::DmaMap { h: Handle(0), dir: DmaDir::ToDevice });
    assert_eq!(p.ops[2], Op::DmaMap { h: Handle(0), dir: DmaDir::FromDevice });
    assert_eq!(p.ops[3], Op::DmaMap { h: Handle(0), dir: DmaDir::Bidirectional });
    assert_eq!(p.to_text().lines().nth(3), Some("dma_map h=0 dir=bidirectional"));
    let r = p.resolve(&areas()).expect("resolves");
    // cma_alloc after three dma_maps still defines handle 1.
    assert!(matches!(r.ops[4], ResolvedOp::CmaAlloc { h: Handle(1), .. }), "{:?}", r.ops[4]);
    assert_eq!(Program::from_json(&p.to_json()), Ok(p.clone()));
    assert!(p.to_json().contains(r#"{"op":"dma_map","h":0,"dir":"to_device"}"#), "{}", p.to_json());
}

#[test]
fn dma_map_errors_name_the_direction_and_the_missing_handle() {
    let e = parse_err("dma_map h=0 dir=sideways");
    assert_eq!((e.line, e.col), (1, 17));
    assert!(e.msg.contains("expected bidirectional, to_device or from_device"), "{}", e.msg);
    let e = parse_err("dma_map dir=to_device");
    assert!(e.msg.contains("dma_map needs h=<handle>"), "{}", e.msg);
    let e = parse_err("dma_map h=4096");
    assert!(e.msg.contains("out of range"), "{}", e.msg);
}
