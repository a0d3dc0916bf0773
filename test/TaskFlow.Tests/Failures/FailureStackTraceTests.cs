using System.Runtime.CompilerServices;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Tests.Failures;

/// <summary>
/// A failure's stack text is the exception's at the capture, whether it is read before or after the failure is
/// rethrown (a rethrow appends the caller's frames to the exception's own trace; the failure must not show them).
/// </summary>
public sealed class FailureStackTraceTests
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Inner() => throw new InvalidOperationException("inner fails");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Outer() => Inner();

    private static async Task InnerAsync()
    {
        await Task.Yield();
        throw new TimeoutException("async fails");
    }

    private static async Task OuterAsync() => await InnerAsync();

    private static Exception Caught(Action action)
    {
        try { action(); }
        catch (Exception e) { return e; }
        throw new InvalidOperationException("did not throw");
    }

    public static TheoryData<string> Shapes => new() { "sync", "async chain", "wrapped", "never thrown" };

    private static Exception Make(string shape) => shape switch
    {
        "sync" => Caught(Outer),
        "async chain" => Caught(() => OuterAsync().GetAwaiter().GetResult()),
        "wrapped" => Caught(() =>
        {
            try { Outer(); }
            catch (Exception e) { throw new ApplicationException("wrapped", e); }
        }),
        _ => new InvalidOperationException("never thrown"),
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Text_read_after_a_rethrow_is_the_text_at_the_capture(string shape)
    {
        var exception = Make(shape);
        var expected = exception.StackTrace; // reading it changes nothing on the exception
        var failure = Failure.FromException(exception);

        var rethrown = Assert.ThrowsAny<Exception>(failure.Rethrow);

        Assert.Same(exception, rethrown);
        if (shape != "never thrown") Assert.NotEqual(expected, rethrown.StackTrace); // the rethrow added frames
        Assert.Equal(expected, failure.StackTrace);
        Assert.Equal(exception.InnerException?.StackTrace, failure.Cause?.StackTrace);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Text_read_before_a_rethrow_stays_the_same_after_it(string shape)
    {
        var exception = Make(shape);
        var failure = Failure.FromException(exception);
        var before = failure.StackTrace;
        Assert.Equal(exception.StackTrace, before);

        Assert.ThrowsAny<Exception>(failure.Rethrow);

        Assert.Equal(before, failure.StackTrace);
    }

    [Fact]
    public async Task A_failed_run_keeps_the_task_frames_and_not_the_engine_frames_that_rethrew_it()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("x", (Func<int>)(() => throw new InvalidOperationException("x fails"))) };
        var engine = FlowEngine.CreateSerial(flow);
        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());

        var text = engine.Storage.GetFailures()["x"].StackTrace;

        Assert.NotNull(text);
        Assert.Contains(nameof(A_failed_run_keeps_the_task_frames_and_not_the_engine_frames_that_rethrew_it), text);
        Assert.DoesNotContain("RaiseStoredFailures", text);
        Assert.Contains("RaiseStoredFailures", thrown.StackTrace);
    }
}
