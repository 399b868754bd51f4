//! Which arithmetic Ed25519 signatures are verified with on this machine.
//!
//! curve25519-dalek chooses its backend at run time from those compiled in. Its AVX-512 IFMA
//! backend verifies about 1.5 times as many signatures a second as AVX2 on CPUs that have IFMA
//! (docs/benchmarks.md), but it is compiled in only when asked for, with
//! `--cfg curve25519_dalek_backend="avx512"`; the workspace's `.cargo/config.toml` asks.

/// The arithmetic curve25519-dalek verifies signatures with on this machine. dalek picks it at
/// run time from the backends compiled in: AVX-512 IFMA where the CPU has it (compiled in only
/// with `--cfg curve25519_dalek_backend="avx512"`, which the workspace's `.cargo/config.toml`
/// passes), else AVX2, else portable 64-bit code. Same choice, same order as dalek's
/// `backend::get_selected_backend`, which is private: this tells operators and the benchmark
/// what the verification figures were measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ed25519Backend {
    Avx512Ifma,
    Avx2,
    Serial,
}

impl Ed25519Backend {
    pub fn detect() -> Ed25519Backend {
        #[cfg(all(target_arch = "x86_64", curve25519_dalek_backend = "avx512"))]
        if std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Ed25519Backend::Avx512Ifma;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Ed25519Backend::Avx2;
        }
        Ed25519Backend::Serial
    }

    pub fn name(self) -> &'static str {
        match self {
            Ed25519Backend::Avx512Ifma => "avx512ifma",
            Ed25519Backend::Avx2 => "avx2",
            Ed25519Backend::Serial => "serial",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace's `.cargo/config.toml` compiles dalek's AVX-512 IFMA backend in; an
    /// explicit `RUSTFLAGS` replaces that file's flags and would silently verify ~1.5x slower on
    /// CPUs that have IFMA. This fails such a build.
    #[cfg(target_arch = "x86_64")]
    #[test]
    // A test failure names the cause; a `const` assertion would stop the test build instead.
    #[allow(clippy::assertions_on_constants)]
    fn built_with_the_avx512_backend() {
        assert!(
            cfg!(curve25519_dalek_backend = "avx512"),
            "curve25519-dalek was built without its AVX-512 backend: RUSTFLAGS must carry \
             --cfg curve25519_dalek_backend=\"avx512\" (see .cargo/config.toml)"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn backend_follows_the_cpu() {
        let ifma = std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl");
        let expected = if ifma {
            Ed25519Backend::Avx512Ifma
        } else if std::arch::is_x86_feature_detected!("avx2") {
            Ed25519Backend::Avx2
        } else {
            Ed25519Backend::Serial
        };
        assert_eq!(Ed25519Backend::detect(), expected);
    }
}
