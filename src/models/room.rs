//! Room for a load while serving. A new version is loaded beside the versions being served and
//! swapped in when warm (availability first), so for a while both are resident, and fusion
//! adds its own peak on top. Before such a load starts a version, the footprint formula's
//! estimate of what it adds at its peak (`repvgg-serve inspect`, docs/footprint.md) must fit
//! between what the process holds now and the memory limit (`--memory-limit-mib`, or the
//! container's): otherwise the load is refused with the numbers, and what was serving stays,
//! instead of the kernel's OOM killer ending every served model half way through the load.
//!
//! The start is not checked: there is nothing to protect yet, and `deploy/` sizes the limit
//! from the same formula.

use crate::config::ModelPlan;
use crate::model::Footprint;

const MIB: f64 = (1 << 20) as f64;

/// Whether `plan` fits under `limit` (bytes) beside what the process holds now; the refusal
/// names the numbers. Blocking: a checkpoint is read to work out its architecture.
pub(super) fn check(plan: &ModelPlan, limit: Option<u64>) -> anyhow::Result<()> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let footprint =
        Footprint::of_source(&plan.source, plan.sessions, plan.max_batch_size, plan.crop)?;
    let Some(footprint) = footprint else {
        tracing::warn!(
            model = %plan.name,
            version = plan.version,
            "the architecture of this ONNX model is unknown before loading it: its memory is not checked"
        );
        return Ok(());
    };
    let resident = crate::memory::resident_bytes().unwrap_or(0);
    fits(&footprint, resident, limit)
}

/// The check itself: `footprint`'s added peak beside `resident` bytes, under `limit` bytes.
fn fits(footprint: &Footprint, resident: u64, limit: u64) -> anyhow::Result<()> {
    let need = footprint.added_peak_mib();
    let (resident, limit) = (resident as f64 / MIB, limit as f64 / MIB);
    let free = (limit - resident).max(0.0);
    if need <= free {
        return Ok(());
    }
    anyhow::bail!(
        "not enough memory: loading it beside what is served needs about {need:.0} MiB at its \
         peak (footprint estimate: weights {:.0} MiB, {} sessions x batches up to {}, fusion \
         included), and the process holds {resident:.0} MiB of its {limit:.0} MiB limit \
         ({free:.0} MiB free); unload a model or version first, or raise the limit \
         (--memory-limit-mib, or the container's)",
        footprint.weights_mib,
        footprint.layout.sessions,
        footprint.layout.max_batch_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{variants, Layout};

    fn a0() -> Footprint {
        let layout = Layout {
            sessions: 2,
            max_batch_size: 8,
            crop: 224,
        };
        Footprint::estimate(
            &variants::find("A0").expect("A0").architecture(1000),
            layout,
        )
    }

    #[test]
    fn a_load_fits_only_when_its_peak_fits_beside_the_resident_size() {
        let need = a0().added_peak_mib();
        assert!(need > 50.0 && need < 200.0, "A0 adds {need} MiB");
        let mib = |m: f64| (m * MIB) as u64;
        assert!(fits(&a0(), mib(200.0), mib(200.0 + need + 1.0)).is_ok());
        let refused = fits(&a0(), mib(200.0), mib(200.0 + need - 1.0))
            .expect_err("does not fit")
            .to_string();
        for number in [
            format!("needs about {need:.0} MiB"),
            "holds 200 MiB".into(),
            format!("({:.0} MiB free)", need - 1.0),
        ] {
            assert!(refused.contains(&number), "{number} in: {refused}");
        }
        // Already over the limit: nothing fits, and the message says 0 free.
        let over = fits(&a0(), mib(300.0), mib(250.0)).expect_err("over");
        assert!(over.to_string().contains("(0 MiB free)"), "{over}");
    }
}
