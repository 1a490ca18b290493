//! Work of concurrent callers served in groups by one task: each caller hands its job to the
//! pool's task and waits for its answer; the task takes the jobs waiting, a group at a time,
//! and serves each group with one statement while the next jobs queue behind it. The group
//! commit of puts, the submits of the run queue, its finishes, appends and notifications all
//! work this way, each with its own rule for which jobs may share a group.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

/// A job waiting for its group, and the way back to its caller.
pub struct Waiting<J, R> {
    /// What the caller handed over.
    pub job: J,
    reply: oneshot::Sender<R>,
}

impl<J, R> Waiting<J, R> {
    /// A job with the end of the channel its caller waits on (for tests of group rules).
    pub fn new(job: J) -> (Self, oneshot::Receiver<R>) {
        let (reply, answer) = oneshot::channel();
        (Self { job, reply }, answer)
    }

    /// Answers the caller (a caller that stopped waiting is not told).
    pub fn answer(self, reply: R) {
        let _gone = self.reply.send(reply);
    }

    /// Whether the caller stopped waiting (its future was dropped): its job need not be done.
    pub fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Why a job was not answered.
pub enum Unanswered<J> {
    /// No runtime to start the task on: the job, for the caller to do alone.
    NoTask(J),
    /// The task stopped with the job unanswered (its runtime shut down). Whether its group's
    /// statement ran is unknown.
    Dropped,
}

type Serve<J, R> = dyn Fn(Vec<Waiting<J, R>>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// Takes the next group from the jobs waiting, in arrival order; what it leaves keeps its
/// place.
pub type Take<J, R> = fn(&mut VecDeque<Waiting<J, R>>) -> Vec<Waiting<J, R>>;

/// A pool's task for one kind of job: the sending end of its queue, the task started on first
/// use (and again if the runtime it ran on shut down).
pub struct Gatherer<J, R> {
    queue: Mutex<Option<mpsc::UnboundedSender<Waiting<J, R>>>>,
    take: Take<J, R>,
    serve: Arc<Serve<J, R>>,
}

impl<J, R> std::fmt::Debug for Gatherer<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatherer").finish_non_exhaustive()
    }
}

impl<J: Send + 'static, R: Send + 'static> Gatherer<J, R> {
    /// A task that takes groups with `take` and serves each with `serve`, which answers every
    /// job of the group.
    pub fn new<F, Fut>(take: Take<J, R>, serve: F) -> Self
    where
        F: Fn(Vec<Waiting<J, R>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let serve: Arc<Serve<J, R>> = Arc::new(move |group| Box::pin(serve(group)));
        Self { queue: Mutex::new(None), take, serve }
    }

    /// Hands `job` to the task and waits for its answer.
    pub async fn call(&self, job: J) -> Result<R, Unanswered<J>> {
        let (waiting, answer) = Waiting::new(job);
        if let Err(waiting) = self.hand(waiting) {
            return Err(Unanswered::NoTask(waiting.job));
        }
        answer.await.map_err(|_| Unanswered::Dropped)
    }

    fn hand(&self, waiting: Waiting<J, R>) -> Result<(), Waiting<J, R>> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let waiting = match queue.as_ref() {
            Some(sender) => match sender.send(waiting) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(waiting)) => waiting,
            },
            None => waiting,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return Err(waiting) };
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(serve_groups(receiver, self.take, Arc::clone(&self.serve)));
        let sent = sender.send(waiting).map_err(|mpsc::error::SendError(waiting)| waiting);
        *queue = Some(sender);
        sent
    }
}

/// The task: serves the waiting jobs a group at a time, until every sender is gone.
async fn serve_groups<J, R>(
    mut queue: mpsc::UnboundedReceiver<Waiting<J, R>>,
    take: Take<J, R>,
    serve: Arc<Serve<J, R>>,
) {
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match queue.recv().await {
                Some(first) => waiting.push_back(first),
                None => return,
            }
        }
        // The callers a group just answered are ready to run, and most will hand over their
        // next job at once: let them, so that it joins the next group instead of trailing it.
        tokio::task::yield_now().await;
        while let Ok(next) = queue.try_recv() {
            waiting.push_back(next);
        }
        let group = take(&mut waiting);
        serve(group).await;
    }
}

/// The first job waiting and every later one that `joins` the first, up to `most`, in
/// arrival order, where no two jobs of a group are `alike`, and no job is taken past an
/// earlier one it is alike with (so that alike jobs are served in the order they came). The
/// rest keep their places.
pub fn take_group<T>(
    waiting: &mut VecDeque<T>,
    most: usize,
    joins: impl Fn(&T, &T) -> bool,
    alike: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    let mut group: Vec<T> = Vec::new();
    let mut left = VecDeque::with_capacity(waiting.len());
    while let Some(next) = waiting.pop_front() {
        let fits = match group.first() {
            None => true,
            Some(first) => {
                group.len() < most
                    && joins(first, &next)
                    && !group.iter().any(|taken| alike(taken, &next))
                    && !left.iter().any(|held| alike(held, &next))
            }
        };
        if fits {
            group.push(next);
        } else {
            left.push_back(next);
        }
    }
    *waiting = left;
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(kind, key)`: jobs join when their kinds match, and are alike when their keys do.
    fn take(waiting: &mut VecDeque<(char, &'static str)>, most: usize) -> Vec<(char, &'static str)> {
        take_group(waiting, most, |first, next| first.0 == next.0, |a, b| a.1 == b.1)
    }

    #[test]
    fn a_group_takes_jobs_of_the_first_ones_kind_one_per_key_and_alike_jobs_keep_their_order() {
        let mut queue: VecDeque<_> =
            [('x', "a"), ('x', "b"), ('x', "a"), ('y', "c"), ('x', "d"), ('y', "a"), ('x', "b")].into();
        assert_eq!(take(&mut queue, 64), [('x', "a"), ('x', "b"), ('x', "d")]);
        assert_eq!(take(&mut queue, 64), [('x', "a"), ('x', "b")]);
        assert_eq!(take(&mut queue, 64), [('y', "c"), ('y', "a")]);
        assert!(queue.is_empty());

        let mut queue: VecDeque<_> = [('x', "a"), ('x', "a"), ('y', "b"), ('x', "b")].into();
        assert_eq!(take(&mut queue, 64), [('x', "a")], "`x b` is not taken past the `y b` left before it");
        assert_eq!(take(&mut queue, 64), [('x', "a")]);
        assert_eq!(take(&mut queue, 64), [('y', "b")]);
        assert_eq!(take(&mut queue, 64), [('x', "b")]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_group_holds_at_most_the_most_jobs_and_the_rest_keep_their_order() {
        let keys = ["a", "b", "c", "d", "e"];
        let mut queue: VecDeque<_> = keys.iter().map(|key| ('x', *key)).collect();
        assert_eq!(take(&mut queue, 3), [('x', "a"), ('x', "b"), ('x', "c")]);
        assert_eq!(Vec::from(queue), [('x', "d"), ('x', "e")]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn callers_waiting_together_are_served_in_one_group_and_each_gets_its_own_answer() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&groups);
        let gatherer: Gatherer<u32, u32> = Gatherer::new(
            |waiting| waiting.drain(..).collect(),
            move |group: Vec<Waiting<u32, u32>>| {
                seen.lock().unwrap_or_else(PoisonError::into_inner).push(group.len());
                for each in group {
                    let doubled = each.job * 2;
                    each.answer(doubled);
                }
                async {}
            },
        );
        let answers = futures::future::join_all((1..=5).map(|job| gatherer.call(job))).await;
        let answers: Vec<u32> = answers.into_iter().map(|answer| answer.ok().unwrap_or_default()).collect();
        assert_eq!(answers, [2, 4, 6, 8, 10]);
        assert_eq!(*groups.lock().unwrap_or_else(PoisonError::into_inner), [5]);
    }

    #[test]
    fn without_a_runtime_the_job_comes_back_to_its_caller() {
        let gatherer: Gatherer<u32, u32> = Gatherer::new(|waiting| waiting.drain(..).collect(), |_| async {});
        let mut call = std::pin::pin!(gatherer.call(7));
        let handed = call.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        assert!(matches!(handed, std::task::Poll::Ready(Err(Unanswered::NoTask(7)))));
    }
}
