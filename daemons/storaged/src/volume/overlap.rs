//! Writes to the same bytes of a replicated volume, one after the other.
//!
//! The NBD protocol leaves the result of two overlapping writes in flight at once undefined:
//! either may win. On a pair that is not enough: the owner applies the two in one order and
//! the replica, which gets them over two connections, may apply them in the other, so the
//! copies would differ for good without either node knowing (and a failover would show the
//! guest other bytes than it read before). DRBD calls these conflicting writes and orders
//! them; so does this: a change waits until every change begun before it that overlaps it
//! has been applied on both nodes. Changes that do not overlap are not held up.

use parking_lot::{Condvar, Mutex};

/// The byte ranges of a volume's changes in flight, in the order they began.
#[derive(Debug, Default)]
pub struct InOrder {
    in_flight: Mutex<InFlight>,
    ended: Condvar,
}

#[derive(Debug, Default)]
struct InFlight {
    /// The next change's number: numbers grow in the order the changes begin.
    next: u64,
    changes: Vec<Change>,
}

/// A change in flight: its number, and the bytes `[start, end)` it changes.
#[derive(Debug, Clone, Copy)]
struct Change {
    number: u64,
    start: u64,
    end: u64,
}

impl Change {
    fn overlaps(&self, other: &Change) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A change's place among those in flight; it leaves when dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    order: &'a InOrder,
    number: u64,
}

impl InOrder {
    /// Waits until no change begun before this one overlaps `[offset, offset + len)`; the
    /// change is in flight until the returned turn is dropped.
    pub fn begin(&self, offset: u64, len: u64) -> Turn<'_> {
        let mut state = self.in_flight.lock();
        let this = Change {
            number: state.next,
            start: offset,
            end: offset.saturating_add(len.max(1)),
        };
        state.next += 1;
        state.changes.push(this);
        while state
            .changes
            .iter()
            .any(|c| c.number < this.number && c.overlaps(&this))
        {
            self.ended.wait(&mut state);
        }
        Turn {
            order: self,
            number: this.number,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.order.in_flight.lock();
        state.changes.retain(|c| c.number != self.number);
        drop(state);
        self.order.ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn an_overlapping_change_waits_for_the_one_before_it_and_others_do_not() {
        let order = Arc::new(InOrder::default());
        let first = order.begin(4096, 8192);
        // Beside it: not held up.
        drop(order.begin(0, 4096));
        drop(order.begin(12288, 4096));
        let done = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (order, done) = (Arc::clone(&order), Arc::clone(&done));
            std::thread::spawn(move || {
                let _turn = order.begin(8192, 100);
                done.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !done.load(Ordering::SeqCst),
            "an overlapping change did not wait"
        );
        drop(first);
        waiter.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert!(order.in_flight.lock().changes.is_empty());
    }
}
