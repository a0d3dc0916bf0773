namespace TaskFlow.Flows;

/// <summary>Anything that can be put in a flow: an atom or another flow.</summary>
public abstract class FlowNode
{
    private string? _name;

    /// <summary>
    /// The token of the compilation that last visited this atom: how a compilation finds an atom used twice without
    /// hashing 100k objects (<c>FlowCompiler</c>).
    /// </summary>
    internal object? CompileMark;

    /// <summary>The node's name; atom names are unique within a flow tree. Defaults to the type's name.</summary>
    public string Name
    {
        get => _name ??= DefaultName();
        init
        {
            if (string.IsNullOrWhiteSpace(value))
                throw new ArgumentException("A flow or atom name must be a non-empty string.", nameof(value));
            _name = value;
        }
    }

    /// <summary>Sets the name from a constructor argument.</summary>
    private protected void SetName(string name)
    {
        if (string.IsNullOrWhiteSpace(name))
            throw new ArgumentException("A flow or atom name must be a non-empty string.", nameof(name));
        _name = name;
    }

    /// <summary>The name used when none is given.</summary>
    private protected virtual string DefaultName() => GetType().Name;

    /// <inheritdoc />
    public override string ToString() => $"{GetType().Name} '{Name}'";
}
