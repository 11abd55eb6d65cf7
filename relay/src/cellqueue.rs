//! A small bounded queue of cells from the core loop to one circuit
//! stream's task. A relay holds one per open circuit, so it is built to
//! cost next to nothing while empty: one allocation holding a lock, an
//! empty `VecDeque` and a `Notify` (tokio's bounded channel allocates a
//! 32-slot block up front, about 1.5 KB per idle circuit).
//!
//! Senders never wait: a full queue refuses the cell (the caller drops and
//! counts it). The receiver sees the end once every sender is gone and the
//! queue is drained. `recv` is cancel-safe.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

struct State {
    cells: VecDeque<Vec<u8>>,
    senders: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side; clone it for more senders.
pub struct CellSender(Arc<Shared>);

/// The receiving side.
pub struct CellReceiver(Arc<Shared>);

/// A queue holding at most `capacity` cells.
pub fn cell_queue(capacity: usize) -> (CellSender, CellReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            cells: VecDeque::new(),
            senders: 1,
        }),
        wake: Notify::new(),
        capacity,
    });
    (CellSender(shared.clone()), CellReceiver(shared))
}

impl CellSender {
    /// Queues `cell`, or gives it back if the queue is full.
    pub fn try_send(&self, cell: Vec<u8>) -> Result<(), Vec<u8>> {
        {
            let mut state = self.0.lock();
            if state.cells.len() >= self.0.capacity {
                return Err(cell);
            }
            state.cells.push_back(cell);
        }
        self.0.wake.notify_one();
        Ok(())
    }
}

impl Clone for CellSender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for CellSender {
    fn drop(&mut self) {
        self.0.lock().senders -= 1;
        self.0.wake.notify_one();
    }
}

impl CellReceiver {
    /// The next cell, or `None` once every sender is gone and nothing is
    /// left.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            {
                let mut state = self.0.lock();
                if let Some(cell) = state.cells.pop_front() {
                    return Some(cell);
                }
                if state.senders == 0 {
                    return None;
                }
            }
            // A wake-up that came while we were not waiting is kept as a
            // permit, so none is lost between the check and the wait.
            self.0.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn cells_arrive_in_order_full_queues_refuse_and_the_end_is_seen() {
        let (sender, mut receiver) = cell_queue(2);
        let other = sender.clone();
        sender.try_send(vec![1]).unwrap();
        other.try_send(vec![2]).unwrap();
        assert_eq!(sender.try_send(vec![3]), Err(vec![3]), "full");
        assert_eq!(receiver.recv().await, Some(vec![1]));
        sender.try_send(vec![4]).unwrap();
        drop((sender, other));
        assert_eq!(receiver.recv().await, Some(vec![2]));
        assert_eq!(receiver.recv().await, Some(vec![4]));
        assert_eq!(receiver.recv().await, None, "drained and no sender left");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        let (sender, mut receiver) = cell_queue(4);
        let waiter = tokio::spawn(async move { receiver.recv().await });
        tokio::task::yield_now().await;
        sender.try_send(vec![9]).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(vec![9]));
    }
}
