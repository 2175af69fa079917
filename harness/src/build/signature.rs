//! A built kernel's signature: what its code and data are, whatever the build's paths and
//! time. Two commits with the same signature built the same kernel, so a reproducer cannot tell
//! them apart: a bisection whose first bad commit has its parent's signature has named a change
//! that changes nothing (syzkaller's `detectNoopChange`, `pkg/bisect`). The builds are
//! reproducible for this (`KBUILD_BUILD_{USER,HOST,TIMESTAMP,VERSION}` fixed).
//!
//! The signature hashes, in section order, the sha256 of every allocated ELF section of
//! `vmlinux` that has file data (no `.bss`, no debug info), notes aside (the build id).

use object::{Object, ObjectSection, SectionFlags};
use sha2::{Digest, Sha256};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SignatureError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not an ELF file the signature can read: {detail}")]
    Elf { path: String, detail: String },
}

/// The signature of the kernel `vmlinux` (hex sha256).
pub fn of_vmlinux(vmlinux: &Path) -> Result<String, SignatureError> {
    let data = std::fs::read(vmlinux)
        .map_err(|source| SignatureError::Read { path: vmlinux.display().to_string(), source })?;
    of_elf(&data).map_err(|detail| SignatureError::Elf { path: vmlinux.display().to_string(), detail })
}

/// The signature of an ELF image in memory.
pub fn of_elf(data: &[u8]) -> Result<String, String> {
    let file = object::File::parse(data).map_err(|e| e.to_string())?;
    let mut all = Sha256::new();
    for s in file.sections() {
        let SectionFlags::Elf { sh_type, sh_flags } = s.flags() else {
            return Err("not an ELF file".into());
        };
        let alloc = sh_flags.0 & object::elf::SHF_ALLOC.0 != 0;
        if !alloc || sh_type == object::elf::SHT_NOBITS || sh_type == object::elf::SHT_NOTE {
            continue;
        }
        let bytes = s.data().map_err(|e| format!("section {}: {e}", s.name().unwrap_or("?")))?;
        all.update(Sha256::digest(bytes));
    }
    Ok(format!("{:x}", all.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF with the given sections (name, kind, bytes).
    fn elf(sections: &[(&str, object::SectionKind, &[u8])]) -> Vec<u8> {
        use object::write::{Object as W, StandardSegment};
        let mut o = W::new(object::BinaryFormat::Elf, object::Architecture::Aarch64, object::Endianness::Little);
        for (name, kind, bytes) in sections {
            let id = o.add_section(o.segment_name(StandardSegment::Data).to_vec(), name.as_bytes().to_vec(), *kind);
            let s = o.section_mut(id);
            if *kind == object::SectionKind::UninitializedData {
                s.append_bss(bytes.len() as u64, 1);
            } else {
                s.set_data(bytes.to_vec(), 1);
            }
        }
        o.write().expect("writing a test ELF")
    }

    use object::SectionKind::{Debug, Text, UninitializedData as Bss};

    #[test]
    fn code_and_data_make_the_signature_debug_info_and_bss_do_not() {
        let base = of_elf(&elf(&[(".text", Text, b"code"), (".debug_info", Debug, b"paths"), (".bss", Bss, b"zzzz")]))
            .expect("parses");
        let other_debug = of_elf(&elf(&[
            (".text", Text, b"code"),
            (".debug_info", Debug, b"other paths"),
            (".bss", Bss, b"zzzzzzzz"),
        ]))
        .expect("parses");
        assert_eq!(base, other_debug, "debug info and .bss size are not the kernel's content");
        let other_code =
            of_elf(&elf(&[(".text", Text, b"cod3"), (".debug_info", Debug, b"paths"), (".bss", Bss, b"zzzz")]))
                .expect("parses");
        assert_ne!(base, other_code, "a changed instruction changes the signature");
    }

    #[test]
    fn a_file_that_is_not_elf_is_an_error_naming_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("vmlinux");
        std::fs::write(&p, b"not an elf").expect("write");
        let e = of_vmlinux(&p).expect_err("not ELF");
        assert!(e.to_string().contains("vmlinux"), "{e}");
    }
}
