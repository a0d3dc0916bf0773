using TaskFlow.Engines;
using TaskFlow.Notifications;

namespace TaskFlow.Listeners;

/// <summary>
/// Something that watches engine runs (TaskFlow's listeners): override the callbacks you need, then
/// <see cref="Attach"/> it to an engine around a run and dispose the handle to detach. One listener may be attached to
/// several engines at once; callbacks then arrive from each engine's run loop, so overrides that keep state must be
/// thread-safe. A callback that throws is isolated by the engine's <see cref="NotificationHub"/> like any subscriber.
/// </summary>
public abstract class FlowListener
{
    /// <summary>
    /// Subscribes this listener to <paramref name="engine"/>'s notifications. Dispose the result to detach (for
    /// example with <c>using</c> around <see cref="FlowEngine.RunAsync"/>).
    /// </summary>
    public IDisposable Attach(FlowEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        var hub = engine.Notifications;
        return new Attachment(this, engine, hub);
    }

    /// <summary>The flow moved to a new state.</summary>
    protected virtual void OnFlowStateChanged(FlowEngine engine, in FlowStateChanged e) { }

    /// <summary>A task or retry controller moved to a new state.</summary>
    protected virtual void OnAtomStateChanged(FlowEngine engine, in AtomStateChanged e) { }

    /// <summary>A running task reported progress (already throttled by its <see cref="Atoms.TaskContext"/>).</summary>
    protected virtual void OnTaskProgressChanged(FlowEngine engine, in TaskProgressChanged e) { }

    /// <summary>Another subscriber of the engine threw (the engine isolated it); <paramref name="notification"/> is the boxed event it was handling.</summary>
    protected virtual void OnSubscriberFailed(FlowEngine engine, Exception exception, object notification) { }

    private sealed class Attachment : IDisposable
    {
        private readonly NotificationHub _hub;
        private readonly Action<Exception, object> _onSubscriberFailed;
        private IDisposable[]? _subscriptions;

        public Attachment(FlowListener listener, FlowEngine engine, NotificationHub hub)
        {
            _hub = hub;
            _onSubscriberFailed = (ex, e) => listener.OnSubscriberFailed(engine, ex, e);
            _subscriptions =
            [
                hub.Subscribe<FlowStateChanged>(e => listener.OnFlowStateChanged(engine, e)),
                hub.Subscribe<AtomStateChanged>(e => listener.OnAtomStateChanged(engine, e)),
                hub.Subscribe<TaskProgressChanged>(e => listener.OnTaskProgressChanged(engine, e)),
            ];
            hub.SubscriberFailed += _onSubscriberFailed;
        }

        public void Dispose()
        {
            var subscriptions = Interlocked.Exchange(ref _subscriptions, null);
            if (subscriptions is null) return;
            foreach (var s in subscriptions) s.Dispose();
            _hub.SubscriberFailed -= _onSubscriberFailed;
        }
    }
}
