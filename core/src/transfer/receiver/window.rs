//! How much the receiver asks for before the parts arrive.

/// The receive window: bytes requested and not yet arrived are kept within it. It starts
/// at the configured initial size and grows by every part received (slow start) up to
/// all the segments in flight.
#[derive(Debug)]
pub(super) struct Window {
    size: usize,
    max: usize,
    outstanding: usize,
}

impl Window {
    pub(super) fn new(initial: usize, max: usize) -> Self {
        Window {
            size: initial,
            max,
            outstanding: 0,
        }
    }

    /// True if a part of `len` bytes may join a request already holding `asking` bytes:
    /// within the window, or the first part asked for when nothing is outstanding (so
    /// that a part larger than the window still goes).
    pub(super) fn admits(&self, asking: usize, len: usize) -> bool {
        self.outstanding + asking + len <= self.size || (asking == 0 && self.outstanding == 0)
    }

    /// A request for `bytes` went out.
    pub(super) fn asked(&mut self, bytes: usize) {
        self.outstanding += bytes;
    }

    /// A part of `len` bytes arrived: it is no longer outstanding, and the window grows
    /// by it.
    pub(super) fn arrived(&mut self, len: usize) {
        self.outstanding = self.outstanding.saturating_sub(len);
        self.size = (self.size + len).min(self.max);
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) fn outstanding(&self) -> usize {
        self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn grows_by_what_arrives_up_to_its_maximum() {
        let mut window = Window::new(4, 10);
        assert!(window.admits(0, 4) && !window.admits(4, 1));
        window.asked(4);
        window.arrived(4);
        assert_eq!((window.size(), window.outstanding()), (8, 0));
        window.asked(8);
        window.arrived(8);
        assert_eq!(window.size(), 10);
    }

    #[test]
    fn a_part_larger_than_the_window_goes_alone() {
        let mut window = Window::new(4, 100);
        assert!(window.admits(0, 50));
        window.asked(50);
        assert!(!window.admits(0, 1));
    }
}
