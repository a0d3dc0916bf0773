return await TaskFlow.Cli.TaskFlowCommand.InvokeAsync(args, Console.Out, Console.Error, interactive: !Console.IsOutputRedirected);
