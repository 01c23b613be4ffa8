// Registers service instances with Apache Curator's ServiceDiscovery (the real library,
// Debian's libcurator-discovery-java), for the io.l5d.curator namer tests.
//
//   java CuratorRegister ZK_CONNECT BASE_PATH NAME,ID,ADDRESS,PORT[,SSL_PORT] ...
//
// Prints "registered" once every instance is in ZooKeeper, then waits: closing stdin
// unregisters them (ServiceDiscovery.close) and exits; killing the process leaves them
// to expire with the ZooKeeper session, as a crashed service would.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.RetryOneTime;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.ServiceInstanceBuilder;

public class CuratorRegister {
    public static void main(String[] args) throws Exception {
        CuratorFramework client = CuratorFrameworkFactory.newClient(args[0], 2000, 5000, new RetryOneTime(100));
        client.start();
        client.blockUntilConnected();
        ServiceDiscovery<Void> discovery = ServiceDiscoveryBuilder.builder(Void.class)
            .client(client).basePath(args[1]).build();
        discovery.start();
        for (int i = 2; i < args.length; i++) {
            String[] f = args[i].split(",");
            ServiceInstanceBuilder<Void> b = ServiceInstance.<Void>builder().name(f[0]).id(f[1]).address(f[2]);
            if (Integer.parseInt(f[3]) > 0) b.port(Integer.parseInt(f[3]));
            if (f.length > 4) b.sslPort(Integer.parseInt(f[4]));
            discovery.registerService(b.build());
        }
        System.out.println("registered");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        while (in.readLine() != null) { }
        discovery.close();
        client.close();
    }
}
