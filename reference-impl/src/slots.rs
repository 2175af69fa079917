//! The driver's handle table: slots `0..MAX_HANDLES`, most programs using the first few dozen. A
//! vector indexed by slot, with the `BTreeMap` calls the model makes (same order of iteration:
//! by slot), because the model looks a handle up on every op.

/// A map from slot number to `T`, iterated in slot order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slots<T> {
    slots: Vec<Option<(u32, T)>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { slots: Vec::new() }
    }
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn get(&self, k: &u32) -> Option<&T> {
        self.slots.get(*k as usize)?.as_ref().map(|(_, v)| v)
    }

    pub(crate) fn contains_key(&self, k: &u32) -> bool {
        self.get(k).is_some()
    }

    /// Inserts `v` at slot `k` (the caller bounds `k` to the driver's slot count).
    pub(crate) fn insert(&mut self, k: u32, v: T) -> Option<T> {
        let i = k as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].replace((k, v)).map(|(_, old)| old)
    }

    pub(crate) fn remove(&mut self, k: &u32) -> Option<T> {
        self.slots.get_mut(*k as usize)?.take().map(|(_, v)| v)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u32, &T)> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(k, v)| (k, v)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.iter().map(|(_, v)| v)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&u32, &mut T) -> bool) {
        for s in &mut self.slots {
            if let Some((k, v)) = s {
                if !keep(k, v) {
                    *s = None;
                }
            }
        }
    }
}

impl<'a, T> IntoIterator for &'a Slots<T> {
    type Item = (&'a u32, &'a T);
    type IntoIter = Box<dyn Iterator<Item = (&'a u32, &'a T)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    proptest::proptest! {
        /// Behaves like the `BTreeMap<u32, T>` it replaces.
        #[test]
        fn slots_behave_like_a_btreemap(ops in proptest::collection::vec((0u8..4, 0u32..40, 0u16..1000), 0..200)) {
            let mut s = Slots::new();
            let mut m = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => proptest::prop_assert_eq!(s.insert(k, v), m.insert(k, v)),
                    1 => proptest::prop_assert_eq!(s.remove(&k), m.remove(&k)),
                    2 => { s.retain(|_, v| *v % 3 != 0); m.retain(|_, v| *v % 3 != 0); }
                    _ => proptest::prop_assert_eq!(s.get(&k), m.get(&k)),
                }
                proptest::prop_assert_eq!(s.iter().collect::<Vec<_>>(), m.iter().collect::<Vec<_>>());
                proptest::prop_assert_eq!(s.contains_key(&k), m.contains_key(&k));
            }
        }
    }
}
