using System.Reflection;
using TaskFlow.Failures;

namespace TaskFlow.Atoms;

/// <summary>
/// A task: a unit of work with execute and revert. Write one in any of these ways:
/// <list type="bullet">
/// <item>a subclass with a public <c>Execute</c> or <c>ExecuteAsync</c> method whose parameter names are its requirements
/// (parameters with defaults are optional; <see cref="CancellationToken"/> and <see cref="TaskContext"/> parameters are
/// supplied by the engine), and optionally <c>Revert</c>/<c>RevertAsync</c> taking any of the same parameters plus
/// <c>result</c> (<see cref="TaskOutcome"/>) and <c>flow_failures</c>;</item>
/// <item><see cref="FlowTask{TArgs, TResult}"/>, with a record whose constructor parameters are the requirements;</item>
/// <item><see cref="Create(string, Delegate, ProvidesSpec?)"/> from a delegate;</item>
/// <item>the low-level form: declare <see cref="Atom.Requires"/>/<see cref="Atom.Optional"/> and override
/// <see cref="ExecuteAsync(TaskArguments, TaskContext)"/> (and <see cref="RevertAsync"/>), for tasks whose inputs are only
/// known at run time.</item>
/// </list>
/// Methods are bound once per type to compiled delegates; nothing is reflected per call.
/// </summary>
public abstract class FlowTask : Atom
{
    private MethodBinder? _execute;
    private MethodBinder? _revert;
    private bool _bound;
    private object? _target;

    /// <summary>Creates a task; its name defaults to the type name.</summary>
    protected FlowTask() { }

    /// <summary>Creates a task with a name.</summary>
    protected FlowTask(string name) => SetName(name);

    /// <summary>
    /// Runs the task. The default implementation calls the subclass's <c>Execute</c>/<c>ExecuteAsync</c> method with
    /// its parameters bound by name; override it for the low-level form.
    /// </summary>
    public virtual ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(context);
        EnsureBound();
        if (_execute is null)
            throw new FlowDefinitionException($"Task '{Name}' ({GetType().Name}) has no public Execute or ExecuteAsync method; declare one, or override ExecuteAsync(TaskArguments, TaskContext).");
        return _execute.Invoke(_target ?? this, arguments, context, default, EmptyFailures);
    }

    /// <summary>
    /// Undoes the task. The default implementation calls the subclass's <c>Revert</c>/<c>RevertAsync</c> method, or does
    /// nothing when there is none.
    /// </summary>
    /// <param name="arguments">The same arguments execute received.</param>
    /// <param name="result">What execute returned, or the failure it raised.</param>
    /// <param name="flowFailures">Every execute failure recorded in the flow so far, by atom name.</param>
    /// <param name="context">The engine's context.</param>
    public virtual ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(context);
        EnsureBound();
        return _revert is null
            ? new ValueTask<object?>((object?)null)
            : _revert.Invoke(_target ?? this, arguments, context, result, flowFailures ?? EmptyFailures);
    }

    internal static readonly IReadOnlyDictionary<string, Failure> EmptyFailures = new Dictionary<string, Failure>();

    /// <inheritdoc />
    protected internal override IReadOnlyList<AtomParameter> GetExecuteParameters()
    {
        EnsureBound();
        return WithDeclaredExtras(_execute?.Parameters ?? []);
    }

    /// <inheritdoc />
    protected internal override IReadOnlyList<AtomParameter> GetRevertParameters()
    {
        EnsureBound();
        return _revert is null ? GetExecuteParameters() : WithDeclaredExtras(_revert.Parameters);
    }

    /// <summary>Binds the execute and revert methods to a delegate's target instead of this object (for <see cref="Create(string, Delegate, ProvidesSpec?)"/>).</summary>
    private protected void BindTo(Delegate execute, Delegate? revert)
    {
        _target = execute.Target;
        _execute = MethodBinder.For(execute.Method, isRevert: false);
        if (revert is not null)
        {
            if (revert.Target != execute.Target)
                throw new FlowDefinitionException($"Task '{Name}': execute and revert delegates must share one target.");
            _revert = MethodBinder.For(revert.Method, isRevert: true);
        }
        _bound = true;
    }

    private void EnsureBound()
    {
        if (_bound) return;
        try
        {
            (_execute, _revert) = MethodsByType.GetOrAdd(GetType(), static type =>
            {
                var exec = MethodBinder.FindMethod(type, typeof(FlowTask), "Execute", "ExecuteAsync", IsLowLevelExecute);
                var revert = MethodBinder.FindMethod(type, typeof(FlowTask), "Revert", "RevertAsync", IsLowLevelRevert);
                return (exec is null ? null : MethodBinder.For(exec, isRevert: false), revert is null ? null : MethodBinder.For(revert, isRevert: true));
            });
        }
        catch (FlowDefinitionException e) when (!e.Message.Contains($"'{Name}'", StringComparison.Ordinal))
        {
            // Binding is per type; say which task of the flow has it.
            throw new FlowDefinitionException($"Task '{Name}': {e.Message}", e);
        }
        _bound = true;
    }

    /// <summary>
    /// Whether reverting this task does nothing: no Revert method and <see cref="RevertAsync"/> not overridden. The
    /// engine then moves the task through REVERTING to REVERTED without a call (no context, no arguments).
    /// </summary>
    internal bool RevertDoesNothing
    {
        get
        {
            if (_revertDoesNothing == 0)
            {
                EnsureBound();
                _revertDoesNothing = _revert is null && !RevertOverridden.GetOrAdd(GetType(), static type =>
                    type.GetMethod(nameof(RevertAsync), [typeof(TaskArguments), typeof(TaskOutcome), typeof(IReadOnlyDictionary<string, Failure>), typeof(TaskContext)])!
                        .DeclaringType != typeof(FlowTask)) ? (byte)1 : (byte)2;
            }
            return _revertDoesNothing == 1;
        }
    }

    private byte _revertDoesNothing; // 0 not known yet, 1 yes, 2 no

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, bool> RevertOverridden = new();

    // Finding the methods reflects over the type: done once per type, not per task (a flow of 100k tasks of one type).
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, (MethodBinder? Execute, MethodBinder? Revert)> MethodsByType = new();

    private static bool IsLowLevelExecute(MethodInfo m)
    {
        var ps = m.GetParameters();
        return ps.Length == 2 && ps[0].ParameterType == typeof(TaskArguments) && ps[1].ParameterType == typeof(TaskContext);
    }

    private static bool IsLowLevelRevert(MethodInfo m)
    {
        var ps = m.GetParameters();
        return ps.Length == 4 && ps[0].ParameterType == typeof(TaskArguments) && ps[1].ParameterType == typeof(TaskOutcome);
    }

    /// <summary>
    /// A task from a delegate whose parameter names are its requirements, e.g.
    /// <c>FlowTask.Create("add", (int x, int y) =&gt; x + y, provides: "sum")</c>.
    /// </summary>
    public static FlowTask Create(string name, Delegate execute, ProvidesSpec? provides = null) =>
        new DelegateTask(name, execute, null) { Provides = provides ?? ProvidesSpec.None };

    /// <summary>A task from an execute delegate and a revert delegate.</summary>
    public static FlowTask Create(string name, Delegate execute, Delegate revert, ProvidesSpec? provides = null) =>
        new DelegateTask(name, execute, revert) { Provides = provides ?? ProvidesSpec.None };

    private sealed class DelegateTask : FlowTask
    {
        public DelegateTask(string name, Delegate execute, Delegate? revert) : base(name)
        {
            ArgumentNullException.ThrowIfNull(execute);
            BindTo(execute, revert);
        }
    }
}

/// <summary>
/// A task whose inputs are a record (or class) built from the bound arguments: its constructor parameters are the
/// requirements (parameters with defaults are optional).
/// </summary>
/// <typeparam name="TArgs">The arguments type.</typeparam>
/// <typeparam name="TResult">The result type.</typeparam>
public abstract class FlowTask<TArgs, TResult> : FlowTask
{
    private static readonly Lazy<(AtomParameter[] Parameters, Func<TaskArguments, TArgs> Factory)> Binding = new(BuildBinding);

    /// <summary>Creates the task.</summary>
    protected FlowTask() { }

    /// <summary>Creates the task with a name.</summary>
    protected FlowTask(string name) : base(name) { }

    /// <summary>Runs the task.</summary>
    public abstract ValueTask<TResult> ExecuteAsync(TArgs arguments, CancellationToken cancellationToken);

    /// <summary>Undoes the task; does nothing unless overridden.</summary>
    public virtual ValueTask RevertAsync(TArgs arguments, TaskOutcome result, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc />
    public sealed override async ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(context);
        return await ExecuteAsync(Binding.Value.Factory(arguments), context.CancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public sealed override async ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(context);
        await RevertAsync(Binding.Value.Factory(arguments), result, context.CancellationToken).ConfigureAwait(false);
        return null;
    }

    /// <inheritdoc />
    protected internal override IReadOnlyList<AtomParameter> GetExecuteParameters() => WithDeclaredExtras(Binding.Value.Parameters);

    /// <inheritdoc />
    protected internal override IReadOnlyList<AtomParameter> GetRevertParameters() => GetExecuteParameters();

    private static (AtomParameter[], Func<TaskArguments, TArgs>) BuildBinding()
    {
        var ctor = typeof(TArgs).GetConstructors(BindingFlags.Public | BindingFlags.Instance)
            .OrderByDescending(c => c.GetParameters().Length).FirstOrDefault()
            ?? throw new FlowDefinitionException($"Arguments type '{typeof(TArgs).Name}' needs a public constructor whose parameters name the task's requirements.");
        var p = System.Linq.Expressions.Expression.Parameter(typeof(TaskArguments), "arguments");
        var parameters = new List<AtomParameter>();
        var args = new List<System.Linq.Expressions.Expression>();
        foreach (var cp in ctor.GetParameters())
        {
            var name = cp.Name!;
            object? def = cp.HasDefaultValue ? cp.DefaultValue : null;
            if (cp.HasDefaultValue && def is null && cp.ParameterType.IsValueType && Nullable.GetUnderlyingType(cp.ParameterType) is null)
                def = Activator.CreateInstance(cp.ParameterType);
            parameters.Add(new AtomParameter(name, cp.HasDefaultValue, def));
            args.Add(cp.HasDefaultValue
                ? System.Linq.Expressions.Expression.Call(p, nameof(TaskArguments.GetOrDefault), [cp.ParameterType], System.Linq.Expressions.Expression.Constant(name), System.Linq.Expressions.Expression.Constant(def, cp.ParameterType))
                : System.Linq.Expressions.Expression.Call(p, nameof(TaskArguments.Get), [cp.ParameterType], System.Linq.Expressions.Expression.Constant(name)));
        }
        var body = System.Linq.Expressions.Expression.New(ctor, args);
        var factory = System.Linq.Expressions.Expression.Lambda<Func<TaskArguments, TArgs>>(System.Linq.Expressions.Expression.Convert(body, typeof(TArgs)), p).Compile();
        return (parameters.ToArray(), factory);
    }
}
