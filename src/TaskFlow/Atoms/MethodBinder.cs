using System.Collections.Concurrent;
using System.Linq.Expressions;
using System.Reflection;
using TaskFlow.Failures;

namespace TaskFlow.Atoms;

/// <summary>
/// Binds a method whose parameter names are an atom's requirements to a compiled delegate, once per method.
/// Calls then cost a delegate invocation and a lookup per argument: no reflection on the hot path.
/// </summary>
internal sealed class MethodBinder
{
    internal delegate ValueTask<object?> Invoker(object? target, TaskArguments arguments, TaskContext context, TaskOutcome outcome, IReadOnlyDictionary<string, Failure> flowFailures);

    private static readonly ConcurrentDictionary<MethodInfo, MethodBinder> Cache = new();

    public const string ResultParameter = "result";
    public const string FlowFailuresParameter = "flow_failures";

    private MethodBinder(MethodInfo method, AtomParameter[] parameters, Invoker invoke)
    {
        Method = method;
        Parameters = parameters;
        Invoke = invoke;
    }

    public MethodInfo Method { get; }

    /// <summary>The bindable parameters (engine-supplied ones excluded).</summary>
    public AtomParameter[] Parameters { get; }

    public Invoker Invoke { get; }

    public static MethodBinder For(MethodInfo method, bool isRevert) => Cache.GetOrAdd(method, m => Build(m, isRevert));

    /// <summary>Finds the single public method named <paramref name="syncName"/> or <paramref name="asyncName"/> declared below <paramref name="stopAt"/>.</summary>
    public static MethodInfo? FindMethod(Type type, Type stopAt, string syncName, string asyncName, Func<MethodInfo, bool> isFrameworkOverload)
    {
        var found = new List<MethodInfo>();
        foreach (var m in type.GetMethods(BindingFlags.Public | BindingFlags.Instance))
        {
            if (m.Name != syncName && m.Name != asyncName) continue;
            if (m.DeclaringType is null || m.DeclaringType == stopAt || !stopAt.IsAssignableFrom(m.DeclaringType)) continue;
            if (isFrameworkOverload(m)) continue;
            if (m.IsGenericMethodDefinition) continue;
            found.Add(m);
        }
        // An override in a subclass hides its base definition: keep the most derived per signature.
        var distinct = found.GroupBy(m => m.GetBaseDefinition()).Select(g => g.First()).ToList();
        if (distinct.Count > 1)
            throw new FlowDefinitionException(
                $"Task type '{type.Name}' declares {distinct.Count} '{syncName}'/'{asyncName}' methods; declare exactly one so its parameters can be bound by name.");
        return distinct.Count == 1 ? distinct[0] : null;
    }

    private static MethodBinder Build(MethodInfo method, bool isRevert)
    {
        var target = Expression.Parameter(typeof(object), "target");
        var args = Expression.Parameter(typeof(TaskArguments), "arguments");
        var ctx = Expression.Parameter(typeof(TaskContext), "context");
        var outcome = Expression.Parameter(typeof(TaskOutcome), "outcome");
        var failures = Expression.Parameter(typeof(IReadOnlyDictionary<string, Failure>), "flowFailures");

        var bindable = new List<AtomParameter>();
        var callArgs = new List<Expression>();
        foreach (var p in method.GetParameters())
        {
            var name = p.Name ?? throw new FlowDefinitionException($"Method '{method.DeclaringType?.Name}.{method.Name}' has a parameter without a name.");
            var pt = p.ParameterType;
            if (pt.IsByRef || p.IsOut)
                throw new FlowDefinitionException($"Method '{method.DeclaringType?.Name}.{method.Name}' parameter '{name}' is by reference; task parameters must be passed by value.");
            if (pt == typeof(CancellationToken))
            {
                callArgs.Add(Expression.Property(ctx, nameof(TaskContext.CancellationToken)));
                continue;
            }
            if (pt == typeof(TaskContext))
            {
                callArgs.Add(ctx);
                continue;
            }
            if (isRevert && name == ResultParameter)
            {
                callArgs.Add(pt == typeof(TaskOutcome)
                    ? outcome
                    : pt == typeof(Failure)
                        ? Expression.Property(outcome, nameof(TaskOutcome.Failure))
                        : Expression.Call(typeof(MethodBinder), nameof(ResultAs), [pt], outcome, Expression.Constant(method.DeclaringType?.Name ?? "task")));
                continue;
            }
            if (isRevert && name == FlowFailuresParameter)
            {
                if (!pt.IsAssignableFrom(typeof(IReadOnlyDictionary<string, Failure>)))
                    throw new FlowDefinitionException($"Method '{method.DeclaringType?.Name}.{method.Name}' parameter 'flow_failures' must be IReadOnlyDictionary<string, Failure>.");
                callArgs.Add(Expression.Convert(failures, pt));
                continue;
            }
            object? defaultValue = p.HasDefaultValue ? p.DefaultValue : null;
            if (p.HasDefaultValue && defaultValue is null && pt.IsValueType && Nullable.GetUnderlyingType(pt) is null)
                defaultValue = Activator.CreateInstance(pt);
            bindable.Add(new AtomParameter(name, p.HasDefaultValue, defaultValue));
            var get = p.HasDefaultValue
                ? Expression.Call(args, nameof(TaskArguments.GetOrDefault), [pt], Expression.Constant(name), Expression.Constant(defaultValue, pt))
                : Expression.Call(args, nameof(TaskArguments.Get), [pt], Expression.Constant(name));
            callArgs.Add(get);
        }

        Expression instance = method.IsStatic ? null! : Expression.Convert(target, method.DeclaringType!);
        Expression call = method.IsStatic ? Expression.Call(method, callArgs) : Expression.Call(instance, method, callArgs);
        var rt = method.ReturnType;
        Expression body;
        if (rt == typeof(void))
            body = Expression.Block(call, Expression.Constant(new ValueTask<object?>((object?)null)));
        else if (rt == typeof(Task))
            body = Expression.Call(typeof(MethodBinder), nameof(FromTask), null, call);
        else if (rt == typeof(ValueTask))
            body = Expression.Call(typeof(MethodBinder), nameof(FromValueTask), null, call);
        else if (rt.IsGenericType && rt.GetGenericTypeDefinition() == typeof(Task<>))
            body = Expression.Call(typeof(MethodBinder), nameof(FromTaskOf), [rt.GetGenericArguments()[0]], call);
        else if (rt.IsGenericType && rt.GetGenericTypeDefinition() == typeof(ValueTask<>))
            body = Expression.Call(typeof(MethodBinder), nameof(FromValueTaskOf), [rt.GetGenericArguments()[0]], call);
        else
            body = Expression.New(typeof(ValueTask<object?>).GetConstructor([typeof(object)])!, Expression.Convert(call, typeof(object)));

        var lambda = Expression.Lambda<Invoker>(body, target, args, ctx, outcome, failures);
        return new MethodBinder(method, bindable.ToArray(), lambda.Compile());
    }

    private static T ResultAs<T>(TaskOutcome outcome, string typeName) =>
        outcome.IsFailure ? default! : ArgumentConverter.Convert<T>(outcome.Value, typeName, ResultParameter);

    private static async ValueTask<object?> FromTask(Task task)
    {
        await task.ConfigureAwait(false);
        return null;
    }

    private static async ValueTask<object?> FromValueTask(ValueTask task)
    {
        await task.ConfigureAwait(false);
        return null;
    }

    private static ValueTask<object?> FromTaskOf<T>(Task<T> task)
    {
        if (task.IsCompletedSuccessfully) return new ValueTask<object?>(task.Result);
        return Await(task);
        static async ValueTask<object?> Await(Task<T> t) => await t.ConfigureAwait(false);
    }

    private static ValueTask<object?> FromValueTaskOf<T>(ValueTask<T> task)
    {
        if (task.IsCompletedSuccessfully) return new ValueTask<object?>(task.Result);
        return Await(task);
        static async ValueTask<object?> Await(ValueTask<T> t) => await t.ConfigureAwait(false);
    }
}
