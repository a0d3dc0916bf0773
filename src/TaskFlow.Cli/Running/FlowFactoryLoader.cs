using System.Reflection;
using System.Runtime.Loader;
using TaskFlow.Flows;

namespace TaskFlow.Cli.Running;

/// <summary>
/// Loads a user's assembly into its own <see cref="AssemblyLoadContext"/> (its dependencies resolved from its own
/// .deps.json and folder) and calls a static factory method in it that returns a <see cref="Flow"/>. TaskFlow's own
/// assemblies are shared with taskflow, so the flow the factory builds is the type the engine runs.
/// </summary>
internal static class FlowFactoryLoader
{
    public static async Task<Flow> CreateFlowAsync(string assemblyPath, string factory)
    {
        var method = FindFactory(LoadAssembly(assemblyPath), factory);
        object? value;
        try
        {
            value = method.Invoke(null, method.GetParameters().Select(p => p.DefaultValue).ToArray());
            value = value switch
            {
                Task<Flow> task => await task,
                ValueTask<Flow> task => await task,
                Task task when task.GetType().GetProperty("Result") is { } result => await AwaitResult(task, result),
                _ => value,
            };
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            throw Threw(factory, e.InnerException);
        }
        catch (Exception e) when (e is not CliException)
        {
            throw Threw(factory, e);
        }
        return value as Flow ?? throw new CliException(ExitCodes.InvalidFlow,
            $"The factory {factory} returned {(value is null ? "null" : $"a {value.GetType().Name}")}, not a Flow.",
            "Return a LinearFlow, UnorderedFlow or GraphFlow.");
    }

    private static async Task<object?> AwaitResult(Task task, PropertyInfo result)
    {
        await task;
        return result.GetValue(task);
    }

    private static CliException Threw(string factory, Exception e) =>
        new(ExitCodes.InvalidFlow, $"The factory {factory} threw {e.GetType().Name}: {e.Message}", "Run with --verbose for the stack.", e);

    internal static Assembly LoadAssembly(string assemblyPath)
    {
        var path = Path.GetFullPath(assemblyPath);
        if (!File.Exists(path))
            throw new CliException(ExitCodes.NotFound, $"There is no assembly at '{path}'.", "Build the project first (dotnet build) and give the path of its .dll.");
        try
        {
            return new FlowAssemblyLoadContext(path).LoadFromAssemblyPath(path);
        }
        catch (BadImageFormatException)
        {
            throw new CliException(ExitCodes.NotFound, $"'{path}' is not a .NET assembly.", "Give the .dll that `dotnet build` writes (not the native app host).");
        }
    }

    private static MethodInfo FindFactory(Assembly assembly, string factory)
    {
        var dot = factory.LastIndexOf('.');
        if (dot <= 0 || dot == factory.Length - 1)
            throw new CliException(ExitCodes.Usage, $"--factory '{factory}' is not of the form Type.Method.", "For example: --factory MyApp.Flows.CreateVolume");
        var typeName = factory[..dot];
        var methodName = factory[(dot + 1)..];
        var types = LoadableTypes(assembly);
        var type = assembly.GetType(typeName)
            ?? Single(types.Where(t => t.Name == typeName || t.FullName?.EndsWith("." + typeName, StringComparison.Ordinal) == true).ToList(), typeName)
            ?? throw new CliException(ExitCodes.NotFound, $"There is no type '{typeName}' in {assembly.GetName().Name}.", Candidates(types));
        var methods = type.GetMethods(BindingFlags.Public | BindingFlags.Static).Where(m => m.Name == methodName).ToList();
        if (methods.Count == 0)
            throw new CliException(ExitCodes.NotFound, $"Type {type.FullName} has no public static method '{methodName}'.", Candidates(types));
        return methods.FirstOrDefault(m => m.GetParameters().All(p => p.HasDefaultValue) && ReturnsFlow(m))
            ?? throw new CliException(ExitCodes.InvalidFlow,
                $"{type.FullName}.{methodName} must take no arguments and return a Flow (or Task<Flow>).", Candidates(types));
    }

    private static Type? Single(List<Type> matches, string typeName) => matches.Count switch
    {
        0 => null,
        1 => matches[0],
        _ => throw new CliException(ExitCodes.Usage, $"Several types are named '{typeName}': {string.Join(", ", matches.Select(t => t.FullName))}.", "Give the full name, with its namespace."),
    };

    internal static IReadOnlyList<Type> LoadableTypes(Assembly assembly)
    {
        try { return assembly.GetTypes(); }
        catch (ReflectionTypeLoadException e) { return [.. e.Types.OfType<Type>()]; }
    }

    private static bool ReturnsFlow(MethodInfo method)
    {
        var type = method.ReturnType;
        if (type.IsGenericType && (type.GetGenericTypeDefinition() == typeof(Task<>) || type.GetGenericTypeDefinition() == typeof(ValueTask<>)))
            type = type.GetGenericArguments()[0];
        return typeof(Flow).IsAssignableFrom(type);
    }

    private static string Candidates(IReadOnlyList<Type> types)
    {
        var factories = types
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => ReturnsFlow(m) && m.GetParameters().All(p => p.HasDefaultValue))
            .Select(m => $"{m.DeclaringType!.FullName}.{m.Name}")
            .Order(StringComparer.Ordinal)
            .Take(10)
            .ToList();
        return factories.Count == 0
            ? "The assembly has no public static method that takes no arguments and returns a Flow."
            : "Factories in the assembly: " + string.Join(", ", factories);
    }

    /// <summary>Resolves the user's dependencies beside their assembly; TaskFlow itself comes from taskflow's own context.</summary>
    private sealed class FlowAssemblyLoadContext(string mainAssemblyPath) : AssemblyLoadContext(Path.GetFileNameWithoutExtension(mainAssemblyPath), isCollectible: false)
    {
        private readonly AssemblyDependencyResolver _resolver = new(mainAssemblyPath);

        protected override Assembly? Load(AssemblyName assemblyName)
        {
            // Shared: one Flow type for the factory and the engine.
            if (assemblyName.Name is { } name && (name == "TaskFlow" || name.StartsWith("TaskFlow.", StringComparison.Ordinal))
                && File.Exists(Path.Combine(AppContext.BaseDirectory, name + ".dll")))
                return null;
            return _resolver.ResolveAssemblyToPath(assemblyName) is { } path ? LoadFromAssemblyPath(path) : null;
        }

        protected override IntPtr LoadUnmanagedDll(string unmanagedDllName) =>
            _resolver.ResolveUnmanagedDllToPath(unmanagedDllName) is { } path ? LoadUnmanagedDllFromPath(path) : IntPtr.Zero;
    }
}
