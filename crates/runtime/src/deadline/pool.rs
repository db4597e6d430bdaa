//! Output buffers reused across calls: each lane instance keeps a few output sets; a worker
//! runs the engine's `run_into` on a set whose buffers nobody else holds any more, so a steady
//! stream of calls makes no per-call output-buffer allocation.

use inference_api::{IoSchema, NamedTensors};
use parking_lot::Mutex;

/// A bounded stack of output sets. The caller gets clones of a set's tensors (shared
/// storage); once it drops them, the set's buffers are unique again and are written in place
/// by the next call that takes the set.
pub(crate) struct OutputPool {
    sets: Mutex<Vec<NamedTensors>>,
    cap: usize,
}

impl OutputPool {
    /// A pool keeping at most `cap` sets.
    pub(crate) fn new(cap: usize) -> OutputPool {
        OutputPool { sets: Mutex::new(Vec::with_capacity(cap)), cap }
    }

    /// A set whose declared outputs are held by nobody else (written in place without a
    /// copy), or an empty set when none is free (the engine then allocates).
    pub(crate) fn take(&self, schema: &IoSchema) -> NamedTensors {
        let mut sets = self.sets.lock();
        let free = sets.iter_mut().position(|set| {
            schema.outputs.iter().all(|o| set.get_mut(&o.name).is_some_and(|t| t.is_unique()))
        });
        match free {
            Some(i) => sets.swap_remove(i),
            None => NamedTensors::new(),
        }
    }

    /// Keeps `set` for a later call (dropped when the pool is full).
    pub(crate) fn put(&self, set: NamedTensors) {
        let mut sets = self.sets.lock();
        if sets.len() < self.cap {
            sets.push(set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference_api::{DType, Tensor, TensorSpec};

    #[test]
    fn a_set_is_reused_only_once_its_buffers_are_free() {
        let schema = IoSchema {
            inputs: vec![],
            outputs: vec![TensorSpec::fixed("y", DType::F32, &[1, 3])],
            classifier: None,
        };
        let pool = OutputPool::new(2);
        assert!(pool.take(&schema).is_empty());
        let set = NamedTensors::new().with("y", Tensor::zeros([1, 3], DType::F32).unwrap());
        let handed_out = set.clone();
        pool.put(set);
        // The caller still holds the outputs: the set is not free.
        assert!(pool.take(&schema).is_empty());
        drop(handed_out);
        let mut again = pool.take(&schema);
        assert!(again.get_mut("y").unwrap().is_unique());
    }
}
