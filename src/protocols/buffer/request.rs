//! The consumer's request (`PyBUF_*` flags) and the pure decision of what a view must hold:
//! which fields are filled, which are NULL, or which rule refuses the request.
//!
//! No Python, no pointers: `plan` is a function of the flags and the exporter's geometry,
//! unit-tested exhaustively below. It follows CPython's reference exporters
//! (`memory_getbuf`, `_testbuffer`'s `ndarray_getbuf`), with every flag tested as
//! `(flags & X) == X`, plus one strictness: request bits that CPython does not define are
//! refused instead of ignored.

use core::ffi::c_int;

use pyo3_ffi as ffi;

/// The consumer's request, as passed to `bf_getbuffer`. Accessors test composite flags the
/// way CPython's `REQ_*` macros do: `(flags & X) == X`.
///
/// ```
/// use pontoneer::BufferFlags;
/// use pontoneer::ffi::{PyBUF_RECORDS_RO, PyBUF_STRIDES};
/// let f = BufferFlags::from_raw(PyBUF_RECORDS_RO);
/// assert!(f.wants_format() && f.wants_strides() && f.wants_shape() && !f.wants_writable());
/// // C_CONTIGUOUS shares bits with STRIDES, but a STRIDES request is not a C request:
/// assert!(!BufferFlags::from_raw(PyBUF_STRIDES).wants_c_contiguous());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferFlags(c_int);

/// Every bit CPython defines for requests: WRITABLE, FORMAT, ND, STRIDES, C/F/ANY
/// contiguity and INDIRECT. (0x2 is unused; 0x100 alone is the INDIRECT bit, and
/// `PyBUF_READ`/`PyBUF_WRITE` are not request flags.)
pub const KNOWN_BITS: c_int = 0x1FD;

impl BufferFlags {
    /// Wraps raw `PyBUF_*` flags.
    pub const fn from_raw(flags: c_int) -> BufferFlags {
        BufferFlags(flags)
    }

    /// The raw flags.
    pub const fn raw(self) -> c_int {
        self.0
    }

    const fn has(self, x: c_int) -> bool {
        self.0 & x == x
    }

    /// `PyBUF_WRITABLE`: the exporter must provide a writable buffer or refuse.
    pub const fn wants_writable(self) -> bool {
        self.has(ffi::PyBUF_WRITABLE)
    }
    /// `PyBUF_FORMAT`: `format` must be filled (otherwise it must be NULL).
    pub const fn wants_format(self) -> bool {
        self.has(ffi::PyBUF_FORMAT)
    }
    /// `PyBUF_ND`: `shape` must be filled (otherwise NULL, and the data C-contiguous).
    pub const fn wants_shape(self) -> bool {
        self.has(ffi::PyBUF_ND)
    }
    /// `PyBUF_STRIDES`: `strides` must be filled (otherwise NULL, and the data C-contiguous).
    pub const fn wants_strides(self) -> bool {
        self.has(ffi::PyBUF_STRIDES)
    }
    /// `PyBUF_C_CONTIGUOUS`.
    pub const fn wants_c_contiguous(self) -> bool {
        self.has(ffi::PyBUF_C_CONTIGUOUS)
    }
    /// `PyBUF_F_CONTIGUOUS`.
    pub const fn wants_f_contiguous(self) -> bool {
        self.has(ffi::PyBUF_F_CONTIGUOUS)
    }
    /// `PyBUF_ANY_CONTIGUOUS`.
    pub const fn wants_any_contiguous(self) -> bool {
        self.has(ffi::PyBUF_ANY_CONTIGUOUS)
    }
    /// `PyBUF_INDIRECT` (suboffsets allowed; pontoneer never needs them).
    pub const fn wants_indirect(self) -> bool {
        self.has(ffi::PyBUF_INDIRECT)
    }
    /// Whether every set bit is one CPython defines for requests.
    pub const fn is_known(self) -> bool {
        self.0 & !KNOWN_BITS == 0
    }
}

/// The exporter side of the decision: what the buffer really is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry<'a> {
    pub itemsize: isize,
    pub readonly: bool,
    /// Extents; empty for a 0-d (scalar) buffer.
    pub shape: &'a [isize],
    /// Strides in bytes, one per dimension.
    pub strides: &'a [isize],
}

impl Geometry<'_> {
    fn nitems(&self) -> isize {
        self.shape.iter().product()
    }

    /// C-contiguous as CPython's `_IsCContiguous` computes it.
    pub(crate) fn is_c_contiguous(&self) -> bool {
        if self.nitems() == 0 {
            return true;
        }
        let mut expected = self.itemsize;
        for (&n, &s) in self.shape.iter().zip(self.strides).rev() {
            if n > 1 && s != expected {
                return false;
            }
            expected *= n;
        }
        true
    }

    /// Fortran-contiguous as CPython's `_IsFortranContiguous` computes it.
    pub(crate) fn is_f_contiguous(&self) -> bool {
        if self.nitems() == 0 {
            return true;
        }
        let mut expected = self.itemsize;
        for (&n, &s) in self.shape.iter().zip(self.strides) {
            if n > 1 && s != expected {
                return false;
            }
            expected *= n;
        }
        true
    }
}

/// What the view will hold. Request-independent fields (buf, len, itemsize, readonly) are
/// always filled; these say which of the others are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub format: bool,
    pub shape: bool,
    pub strides: bool,
    /// The `ndim` to report: the real one when shape is given, else 1 (memoryview's rule).
    pub ndim: c_int,
}

/// Why a request is refused; each becomes a `BufferError` with [`Refusal::message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    UnknownFlags(c_int),
    NotWritable,
    NotCContiguous,
    NotFContiguous,
    NotContiguous,
    NeedsStrides,
    FormatWithoutShape,
}

impl Refusal {
    /// The `BufferError` message, in CPython's style, naming the exporting type.
    pub(crate) fn message(self, type_name: &str) -> String {
        match self {
            Refusal::UnknownFlags(f) => format!(
                "{type_name}: invalid buffer request flags 0x{f:x} (bits outside PyBUF_* request flags)"
            ),
            Refusal::NotWritable => format!("{type_name}: underlying buffer is not writable"),
            Refusal::NotCContiguous => {
                format!("{type_name}: underlying buffer is not C-contiguous")
            }
            Refusal::NotFContiguous => {
                format!("{type_name}: underlying buffer is not Fortran contiguous")
            }
            Refusal::NotContiguous => format!("{type_name}: underlying buffer is not contiguous"),
            Refusal::NeedsStrides => format!(
                "{type_name}: underlying buffer is not C-contiguous and the request has no PyBUF_STRIDES"
            ),
            Refusal::FormatWithoutShape => format!(
                "{type_name}: cannot cast to unsigned bytes if the format flag is present \
                 (PyBUF_FORMAT needs PyBUF_ND)"
            ),
        }
    }
}

/// Decides the answer to `flags` for an exporter of geometry `g`.
pub(crate) fn plan(flags: BufferFlags, g: &Geometry<'_>) -> Result<Plan, Refusal> {
    if !flags.is_known() {
        return Err(Refusal::UnknownFlags(flags.raw()));
    }
    if flags.wants_writable() && g.readonly {
        return Err(Refusal::NotWritable);
    }
    // The geometry is only walked when the request depends on it: a strided request with no
    // contiguity demand (memoryview, numpy) never asks.
    let needs_c =
        flags.wants_c_contiguous() || flags.wants_any_contiguous() || !flags.wants_strides();
    let c = needs_c && g.is_c_contiguous();
    if flags.wants_c_contiguous() && !c {
        return Err(Refusal::NotCContiguous);
    }
    if flags.wants_f_contiguous() && !g.is_f_contiguous() {
        return Err(Refusal::NotFContiguous);
    }
    if flags.wants_any_contiguous() && !c && !g.is_f_contiguous() {
        return Err(Refusal::NotContiguous);
    }
    if !flags.wants_strides() && !c {
        return Err(Refusal::NeedsStrides);
    }
    let shape = flags.wants_shape();
    if !shape && flags.wants_format() {
        return Err(Refusal::FormatWithoutShape);
    }
    Ok(Plan {
        format: flags.wants_format(),
        shape: shape && !g.shape.is_empty(),
        strides: flags.wants_strides() && !g.shape.is_empty(),
        ndim: if shape { g.shape.len() as c_int } else { 1 },
    })
}

/// [`plan`] for the common 1-D contiguous buffer (C and Fortran contiguous by definition),
/// without walking any geometry: the same answers, fewer instructions.
#[inline]
pub(crate) fn plan_contiguous_1d(flags: BufferFlags, readonly: bool) -> Result<Plan, Refusal> {
    if !flags.is_known() {
        return Err(Refusal::UnknownFlags(flags.raw()));
    }
    if flags.wants_writable() && readonly {
        return Err(Refusal::NotWritable);
    }
    let shape = flags.wants_shape();
    if !shape && flags.wants_format() {
        return Err(Refusal::FormatWithoutShape);
    }
    Ok(Plan {
        format: flags.wants_format(),
        shape,
        strides: flags.wants_strides(),
        ndim: 1,
    })
}

/// [`plan`] without the geometry when the answer does not depend on it: a known request
/// that wants strides and no contiguity (`memoryview`'s `PyBUF_FULL_RO`, numpy's
/// `PyBUF_RECORDS`) is granted whatever the layout, unless it wants to write to read-only
/// memory. `None`: the request asks about contiguity, ask [`plan`].
#[inline]
pub(crate) fn plan_strided(
    flags: BufferFlags,
    readonly: bool,
    ndim: usize,
) -> Option<Result<Plan, Refusal>> {
    if !flags.is_known() {
        return Some(Err(Refusal::UnknownFlags(flags.raw())));
    }
    let contiguity = ffi::PyBUF_C_CONTIGUOUS | ffi::PyBUF_F_CONTIGUOUS | ffi::PyBUF_ANY_CONTIGUOUS;
    if !flags.wants_strides() || flags.raw() & contiguity & !ffi::PyBUF_STRIDES != 0 {
        return None;
    }
    if flags.wants_writable() && readonly {
        return Some(Err(Refusal::NotWritable));
    }
    // PyBUF_STRIDES includes PyBUF_ND: shape and strides (none for ndim 0), the true ndim.
    Some(Ok(Plan {
        format: flags.wants_format(),
        shape: ndim > 0,
        strides: ndim > 0,
        ndim: ndim as c_int,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffi::*;

    const NAMED: [(c_int, &str); 17] = [
        (PyBUF_SIMPLE, "SIMPLE"),
        (PyBUF_WRITABLE, "WRITABLE"),
        (PyBUF_FORMAT, "FORMAT"),
        (PyBUF_ND, "ND"),
        (PyBUF_STRIDES, "STRIDES"),
        (PyBUF_C_CONTIGUOUS, "C_CONTIGUOUS"),
        (PyBUF_F_CONTIGUOUS, "F_CONTIGUOUS"),
        (PyBUF_ANY_CONTIGUOUS, "ANY_CONTIGUOUS"),
        (PyBUF_INDIRECT, "INDIRECT"),
        (PyBUF_CONTIG, "CONTIG"),
        (PyBUF_CONTIG_RO, "CONTIG_RO"),
        (PyBUF_STRIDED, "STRIDED"),
        (PyBUF_STRIDED_RO, "STRIDED_RO"),
        (PyBUF_RECORDS, "RECORDS"),
        (PyBUF_RECORDS_RO, "RECORDS_RO"),
        (PyBUF_FULL, "FULL"),
        (PyBUF_FULL_RO, "FULL_RO"),
    ];

    struct Ex {
        name: &'static str,
        itemsize: isize,
        readonly: bool,
        shape: Vec<isize>,
        strides: Vec<isize>,
        c: bool,
        f: bool,
    }

    fn exporters() -> Vec<Ex> {
        let ex = |name, itemsize, readonly, shape: &[isize], strides: &[isize], c, f| Ex {
            name,
            itemsize,
            readonly,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            c,
            f,
        };
        vec![
            ex("1-D ro", 8, true, &[5], &[8], true, true),
            ex("1-D rw", 8, false, &[5], &[8], true, true),
            ex("2-D C", 8, false, &[2, 3], &[24, 8], true, false),
            ex("2-D F", 8, false, &[2, 3], &[8, 16], false, true),
            ex("1xN", 8, false, &[1, 4], &[32, 8], true, true),
            ex("Nx1", 8, false, &[4, 1], &[8, 8], true, true),
            ex("empty 1-D", 8, true, &[0], &[8], true, true),
            ex("empty 2-D", 4, false, &[0, 3], &[12, 4], true, true),
            ex("negative 1-D", 8, true, &[4], &[-8], false, false),
            ex("step 1-D", 2, false, &[3], &[4], false, false),
            ex("3-D C", 1, false, &[2, 3, 4], &[12, 4, 1], true, false),
            ex("0-d", 8, false, &[], &[], true, true),
        ]
    }

    fn geometry(e: &Ex) -> Geometry<'_> {
        Geometry {
            itemsize: e.itemsize,
            readonly: e.readonly,
            shape: &e.shape,
            strides: &e.strides,
        }
    }

    #[test]
    fn contiguity_matches_cpython_definition() {
        for e in exporters() {
            let g = geometry(&e);
            assert_eq!(g.is_c_contiguous(), e.c, "{}: C", e.name);
            assert_eq!(g.is_f_contiguous(), e.f, "{}: F", e.name);
        }
    }

    /// An independent statement of the rules, written per flag bit, checked against `plan`
    /// for every exporter and every value of the 9 request bits plus invalid ones.
    #[test]
    fn plan_follows_the_rules_for_every_flag_combination() {
        let mut flags: Vec<c_int> = (0..0x200).collect();
        flags.extend([0x200, 0x400, 0x1000 | PyBUF_ND, -1, c_int::MIN]);
        flags.extend(NAMED.iter().map(|&(f, _)| f));
        for e in exporters() {
            let g = geometry(&e);
            for &f in &flags {
                let got = plan(BufferFlags(f), &g);
                let bit = |x: c_int| f & x == x;
                let unknown = f & !0x1FD != 0;
                let refuse = unknown
                    || (f & 1 != 0 && e.readonly)
                    || (bit(PyBUF_C_CONTIGUOUS) && !e.c)
                    || (bit(PyBUF_F_CONTIGUOUS) && !e.f)
                    || (bit(PyBUF_ANY_CONTIGUOUS) && !e.c && !e.f)
                    || (!bit(PyBUF_STRIDES) && !e.c)
                    || (!bit(PyBUF_ND) && f & PyBUF_FORMAT != 0);
                match got {
                    Err(_) => assert!(refuse, "{}: 0x{f:x} refused but the rules grant it", e.name),
                    Ok(p) => {
                        assert!(
                            !refuse,
                            "{}: 0x{f:x} granted but the rules refuse it",
                            e.name
                        );
                        assert_eq!(
                            p.format,
                            f & PyBUF_FORMAT != 0,
                            "{}: 0x{f:x} format",
                            e.name
                        );
                        let nd = !e.shape.is_empty();
                        assert_eq!(p.shape, bit(PyBUF_ND) && nd, "{}: 0x{f:x} shape", e.name);
                        assert_eq!(
                            p.strides,
                            bit(PyBUF_STRIDES) && nd,
                            "{}: 0x{f:x} strides",
                            e.name
                        );
                        let ndim = if bit(PyBUF_ND) {
                            e.shape.len() as c_int
                        } else {
                            1
                        };
                        assert_eq!(p.ndim, ndim, "{}: 0x{f:x} ndim", e.name);
                    }
                }
            }
        }
    }

    #[test]
    fn named_requests_on_a_read_only_vector() {
        let e = &exporters()[0];
        let g = geometry(e);
        for (f, name) in NAMED {
            let writable = f & PyBUF_WRITABLE != 0;
            let format_without_nd = f & PyBUF_FORMAT != 0 && f & PyBUF_ND == 0;
            assert_eq!(
                plan(BufferFlags(f), &g).is_ok(),
                !writable && !format_without_nd,
                "{name}"
            );
        }
    }

    #[test]
    fn several_contiguity_bits_are_each_checked() {
        let ex = exporters();
        let c_only = geometry(&ex[2]);
        let both = PyBUF_F_CONTIGUOUS | PyBUF_ANY_CONTIGUOUS;
        assert_eq!(
            plan(BufferFlags(both), &c_only),
            Err(Refusal::NotFContiguous)
        );
        assert!(plan(BufferFlags(PyBUF_ANY_CONTIGUOUS), &c_only).is_ok());
        for tall_or_wide in [&ex[4], &ex[5], &ex[7]] {
            assert!(plan(BufferFlags(PyBUF_F_CONTIGUOUS), &geometry(tall_or_wide)).is_ok());
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        let ex = exporters();
        let neg = geometry(&ex[8]);
        assert_eq!(
            plan(BufferFlags(PyBUF_ND), &neg),
            Err(Refusal::NeedsStrides)
        );
        assert_eq!(
            plan(BufferFlags(PyBUF_SIMPLE | PyBUF_FORMAT), &geometry(&ex[0])),
            Err(Refusal::FormatWithoutShape)
        );
        assert_eq!(
            plan(BufferFlags(0x200), &geometry(&ex[1])),
            Err(Refusal::UnknownFlags(0x200))
        );
        assert!(
            Refusal::NotWritable
                .message("FloatBuffer")
                .contains("FloatBuffer")
        );
    }

    #[test]
    fn the_1d_fast_path_agrees_with_plan() {
        for readonly in [false, true] {
            for n in [0isize, 1, 7] {
                let shape = [n];
                let strides = [8];
                let g = Geometry {
                    itemsize: 8,
                    readonly,
                    shape: &shape,
                    strides: &strides,
                };
                let mut flags: Vec<c_int> = (0..0x200).collect();
                flags.extend([0x200, 0x400, -1, c_int::MIN]);
                for f in flags {
                    assert_eq!(
                        plan_contiguous_1d(BufferFlags(f), readonly),
                        plan(BufferFlags(f), &g),
                        "flags 0x{f:x}, n {n}, readonly {readonly}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_strided_shortcut_agrees_with_plan() {
        let mut flags: Vec<c_int> = (0..0x200).collect();
        flags.extend([0x200, 0x400, -1, c_int::MIN]);
        let mut answered = 0;
        for e in exporters() {
            let g = geometry(&e);
            for &f in &flags {
                if let Some(p) = plan_strided(BufferFlags(f), e.readonly, e.shape.len()) {
                    answered += 1;
                    assert_eq!(p, plan(BufferFlags(f), &g), "{} flags 0x{f:x}", e.name);
                }
            }
        }
        // It must answer the requests it exists for (and unknown flags), not only defer.
        assert!(answered > 0);
        assert!(plan_strided(BufferFlags(ffi::PyBUF_FULL_RO), true, 2).is_some());
        assert!(plan_strided(BufferFlags(ffi::PyBUF_RECORDS), false, 2).is_some());
        assert!(plan_strided(BufferFlags(ffi::PyBUF_C_CONTIGUOUS), false, 2).is_none());
    }

    #[test]
    fn ndim_is_one_without_nd_even_for_matrices() {
        let ex = exporters();
        let p = plan(BufferFlags(PyBUF_SIMPLE), &geometry(&ex[10])).unwrap();
        assert_eq!(
            (p.ndim, p.shape, p.strides, p.format),
            (1, false, false, false)
        );
    }
}
