using TaskFlow.States;

namespace TaskFlow.Notifications;

/// <summary>Whether an atom is a task or a retry controller.</summary>
public enum AtomKind
{
    /// <summary>A task.</summary>
    Task,
    /// <summary>A retry controller.</summary>
    Retry,
}

/// <summary>A flow moved to a new state.</summary>
/// <param name="FlowName">The flow.</param>
/// <param name="State">The new state.</param>
/// <param name="OldState">The previous state.</param>
public readonly record struct FlowStateChanged(string FlowName, FlowState State, FlowState OldState);

/// <summary>An atom moved to a new state (or saved a result in the same state).</summary>
/// <param name="AtomName">The atom.</param>
/// <param name="Kind">Task or retry.</param>
/// <param name="State">The new state.</param>
/// <param name="OldState">The previous state.</param>
/// <param name="Result">For SUCCESS, FAILURE, REVERTED and REVERT_FAILURE: the result or <see cref="Failures.Failure"/>.</param>
public readonly record struct AtomStateChanged(string AtomName, AtomKind Kind, AtomState State, AtomState OldState, object? Result);

/// <summary>A running task reported progress.</summary>
/// <param name="AtomName">The task.</param>
/// <param name="Progress">Between 0 and 1.</param>
/// <param name="Details">What the task attached, if anything.</param>
public readonly record struct TaskProgressChanged(string AtomName, double Progress, object? Details);

/// <summary>
/// Where an engine publishes its events. Subscribe to an event type (optionally filtered); dispose the returned
/// handle to unsubscribe. Handlers run synchronously on the thread that raised the event; a handler that throws is
/// reported through <see cref="SubscriberFailed"/> and never breaks the engine.
/// </summary>
public sealed class NotificationHub
{
    private volatile Subscription[] _subscriptions = [];
    private readonly Lock _gate = new();

    /// <summary>
    /// Called with the exception and the (boxed) event when a subscriber throws; the exception is otherwise swallowed so
    /// that observers can never break a run. <c>LoggingListener</c> (TaskFlow.Hosting) logs these; attach one, or
    /// handle this event, to see failing subscribers.
    /// </summary>
    public event Action<Exception, object>? SubscriberFailed;

    /// <summary>Whether anyone listens for <typeparamref name="TEvent"/> (lets the engine skip building events).</summary>
    public bool HasSubscribers<TEvent>() where TEvent : struct
    {
        foreach (var s in _subscriptions) if (s.EventType == typeof(TEvent) || s.EventType is null) return true;
        return false;
    }

    /// <summary>
    /// Subscribes to every event of every type (TaskFlow's <c>ANY</c>), boxed: for logging, tracing and tests. Prefer
    /// <see cref="Subscribe{TEvent}(Action{TEvent})"/> where the event type is known, which does not box.
    /// </summary>
    public IDisposable SubscribeAll(Action<object> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new Subscription(this, null, handler));
    }

    /// <summary>Subscribes to every event of type <typeparamref name="TEvent"/>.</summary>
    public IDisposable Subscribe<TEvent>(Action<TEvent> handler) where TEvent : struct => Subscribe(handler, null);

    /// <summary>Subscribes to events of type <typeparamref name="TEvent"/> that pass <paramref name="filter"/>.</summary>
    public IDisposable Subscribe<TEvent>(Action<TEvent> handler, Func<TEvent, bool>? filter) where TEvent : struct
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Add(new Subscription(this, typeof(TEvent), filter is null ? handler : e => { if (filter(e)) handler(e); }));
    }

    private Subscription Add(Subscription subscription)
    {
        lock (_gate) _subscriptions = [.. _subscriptions, subscription];
        return subscription;
    }

    /// <summary>Subscribes to atom state changes into one state.</summary>
    public IDisposable SubscribeAtomState(AtomState state, Action<AtomStateChanged> handler) =>
        Subscribe(handler, e => e.State == state);

    /// <summary>Subscribes to state changes of one kind of atom (tasks or retry controllers) into one state.</summary>
    public IDisposable SubscribeAtomState(AtomKind kind, AtomState state, Action<AtomStateChanged> handler) =>
        Subscribe(handler, e => e.Kind == kind && e.State == state);

    /// <summary>Subscribes to flow state changes into one state.</summary>
    public IDisposable SubscribeFlowState(FlowState state, Action<FlowStateChanged> handler) =>
        Subscribe(handler, e => e.State == state);

    internal void Publish<TEvent>(in TEvent e) where TEvent : struct
    {
        var subs = _subscriptions;
        for (int i = 0; i < subs.Length; i++)
        {
            var type = subs[i].EventType;
            if (type != typeof(TEvent) && type is not null) continue;
            try
            {
                if (type is null) ((Action<object>)subs[i].Handler)(e);
                else ((Action<TEvent>)subs[i].Handler)(e);
            }
            catch (Exception ex)
            {
                try { SubscriberFailed?.Invoke(ex, e); } catch { /* a failing error handler must not break the engine either */ }
            }
        }
    }

    private void Remove(Subscription sub)
    {
        lock (_gate) _subscriptions = _subscriptions.Where(s => !ReferenceEquals(s, sub)).ToArray();
    }

    private sealed class Subscription(NotificationHub hub, Type? eventType, Delegate handler) : IDisposable
    {
        /// <summary>The event type, or null for every type.</summary>
        public Type? EventType { get; } = eventType;
        public Delegate Handler { get; } = handler;
        public void Dispose() => hub.Remove(this);
    }
}
