//! The fuzzer's input: one program. On disk (the queue in `OUT/corpus/`, reproducers) it is the
//! text form, so a person can read every corpus entry and `cmafuzz replay` runs it as it is.

use libafl::corpus::CorpusId;
use libafl::inputs::Input;
use libafl::Error;
use reference_impl::program::Program;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest program the mutators grow (the driver takes `MAX_OPS`; longer programs only cost time).
pub const MAX_FUZZ_OPS: usize = 200;

/// A program as LibAFL's input. Serialised (LLMP messages, saved state) as its text form:
/// LibAFL uses postcard, which cannot read the tagged enums of the JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProgramInput(pub Program);

impl Serialize for ProgramInput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_text())
    }
}

impl<'de> Deserialize<'de> for ProgramInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Program::parse(&text).map(ProgramInput).map_err(serde::de::Error::custom)
    }
}

impl ProgramInput {
    /// The content hash that names the input on disk: the first 64 bits of the sha256 of its
    /// text form, so the same program gets the same name on every machine and Rust release, and
    /// a resumed or parallel campaign adding it again finds the file already there.
    pub fn content_hash(&self) -> u64 {
        let digest = crate::disk::sha256_hex(self.0.to_text().as_bytes());
        // 16 hex digits are 64 bits, so this cannot fail; 0 would only mean a broken digest.
        u64::from_str_radix(&digest[..16], 16).unwrap_or(0)
    }
}

/// The program in `path`: the JSON form for `*.json`, the text form otherwise. The error says
/// what is wrong with the file (not which file: callers name it).
pub fn read_program(path: &Path) -> Result<Program, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let prog = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        Program::from_json(&text)
    } else {
        Program::parse(&text)
    };
    prog.map_err(|e| e.to_string())
}

/// Its op count: the minimizing scheduler favours short programs.
impl libafl_bolts::HasLen for ProgramInput {
    fn len(&self) -> usize {
        self.0.ops.len()
    }
}

impl Input for ProgramInput {
    fn to_file<P>(&self, path: P) -> Result<(), Error>
    where
        P: AsRef<Path>,
    {
        libafl_bolts::fs::write_file_atomic(path, self.0.to_text().as_bytes())
    }

    fn from_file<P>(path: P) -> Result<Self, Error>
    where
        P: AsRef<Path>,
    {
        let path = path.as_ref();
        read_program(path)
            .map(ProgramInput)
            .map_err(|e| Error::illegal_argument(format!("{}: {e} (fix or remove the file)", path.display())))
    }

    fn generate_name(&self, _id: Option<CorpusId>) -> String {
        format!("{:016x}.prog", self.content_hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_written_to_disk_reads_back_as_the_same_program_in_text_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = ProgramInput(crate::generate::program(3));
        let path = dir.path().join(p.generate_name(None));
        p.to_file(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(Program::parse(&text).as_ref(), Ok(&p.0));
        assert_eq!(ProgramInput::from_file(&path).expect("load"), p);
        assert!(path.to_string_lossy().ends_with(".prog"));
    }

    #[test]
    fn a_corpus_file_is_named_by_the_sha256_of_its_text() {
        let p =
            ProgramInput(Program::parse("cma_alloc area=reserved count=3 align=0\ncma_release h=0\n").expect("parses"));
        let text = p.0.to_text();
        assert_eq!(text, "cma_alloc area=reserved count=3 align=0\ncma_release h=0\n");
        // printf 'cma_alloc area=reserved count=3 align=0\ncma_release h=0\n' | sha256sum | cut -c1-16
        assert_eq!(p.generate_name(None), "8c83d55032f8cad4.prog");
    }

    #[test]
    fn inputs_cross_llmp_as_postcard_and_come_back_equal() {
        for seed in 0..50 {
            let p = ProgramInput(crate::generate::program(seed));
            let bytes = postcard::to_allocvec(&p).expect("serialise");
            let back: ProgramInput = postcard::from_bytes(&bytes).expect("deserialise");
            assert_eq!(back, p, "seed {seed}");
        }
    }

    #[test]
    fn a_garbled_corpus_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.prog");
        std::fs::write(&path, "cma_alloc count=banana\n").expect("write");
        let e = ProgramInput::from_file(&path).expect_err("must not parse");
        assert!(e.to_string().contains("bad.prog"), "{e}");
    }
}
