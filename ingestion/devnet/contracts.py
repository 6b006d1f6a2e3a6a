"""Compiled devnet contracts used by ``ingestion.devnet.traffic``: a small ERC-20, an EIP-7702
target, and TraceLab + TraceChild, which make every call-trace shape (nested calls carrying
value, STATICCALL, DELEGATECALL, CREATE and CREATE2 from a contract, caught and uncaught reverts,
SELFDESTRUCT).

The creation bytecode below was compiled once by hand from ``SOLIDITY_SOURCE`` with solcjs
(npm ``solc@0.8.28``, standard JSON: optimizer on with 200 runs, ``evmVersion: "cancun"``,
``metadata: {bytecodeHash: "none", appendCBOR: false}``) so that the project needs no compiler.
Cancun bytecode runs on both ``--hardfork cancun`` and ``--hardfork prague`` devnets.
To change a contract: edit the source, recompile with the same settings, paste the new objects
(``npm install --no-save --prefix /tmp/solc solc@0.8.28``; solc warns that ``selfdestruct`` is
deprecated: intended, the traces need it).
"""

SOLIDITY_SOURCE = """\
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// A minimal ERC-20 for devnet traffic. The deployer receives the whole supply. batchTransfer
/// emits one Transfer log per recipient; transferFrom emits Approval + Transfer (as
/// OpenZeppelin 4 did), so some transactions carry several logs.
/// Storage: totalSupply slot 0, balanceOf slot 1, allowance slot 2.
contract DevToken {
    string public constant name = "Chainlake Dev Token";
    string public constant symbol = "CLD";
    uint8 public constant decimals = 18;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(uint256 supply) {
        totalSupply = supply;
        balanceOf[msg.sender] = supply;
        emit Transfer(address(0), msg.sender, supply);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance");
        allowance[from][msg.sender] = allowed - value;
        emit Approval(from, msg.sender, allowed - value);
        _move(from, to, value);
        return true;
    }

    function batchTransfer(address[] calldata to, uint256[] calldata values) external {
        require(to.length == values.length, "length");
        for (uint256 i = 0; i < to.length; i++) {
            _move(msg.sender, to[i], values[i]);
        }
    }

    function _move(address from, address to, uint256 value) private {
        require(balanceOf[from] >= value, "balance");
        balanceOf[from] -= value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}

/// EIP-7702 delegation target: an EOA delegated here emits Pinged from its own address and
/// counts pings in its own storage.
contract PingDelegate {
    uint256 public pings;

    event Pinged(address indexed caller, uint256 pings);

    function ping() external {
        pings += 1;
        emit Pinged(msg.sender, pings);
    }
}

/// A contract to create and destroy. TraceLab creates it (CREATE, CREATE2) and destroys one in
/// the same transaction; coverage traffic also deploys one on its own and destroys it later.
contract TraceChild {
    constructor() payable {}

    /// SELFDESTRUCT, sending the balance to ``beneficiary``. Since Cancun (EIP-6780) the account
    /// (code, storage) is only deleted when it was created in the same transaction.
    function destroy(address payable beneficiary) external payable {
        selfdestruct(beneficiary);
    }
}

/// Call shapes for traces: calls nested 4 deep carrying value (with a STATICCALL and a
/// DELEGATECALL at the bottom), CREATE and CREATE2 from a contract, an inner revert caught by
/// try/catch, a top-level revert after inner calls, SELFDESTRUCT of a contract created in the
/// same transaction.
contract TraceLab {
    event Created(address indexed child, bool create2);
    event Caught(bytes reason);

    /// Calls itself ``depth`` more times passing the value on; the innermost call pays ``to``,
    /// then reads the balance through a DELEGATECALL and a STATICCALL.
    function nest(uint256 depth, address payable to) external payable returns (uint256) {
        if (depth == 0) {
            (bool paid, ) = to.call{value: msg.value}("");
            require(paid, "pay");
            (bool ok, bytes memory out) = address(this).delegatecall(abi.encodeCall(this.probe, ()));
            require(ok, "delegatecall");
            return this.peek() + abi.decode(out, (uint256));
        }
        return this.nest{value: msg.value}(depth - 1, to) + 1;
    }

    function peek() external view returns (uint256) {
        return address(this).balance;
    }

    /// The DELEGATECALL target: payable, since a delegate call keeps the caller's msg.value.
    function probe() external payable returns (uint256) {
        return address(this).balance;
    }

    function createChild() external payable returns (address child) {
        child = address(new TraceChild{value: msg.value}());
        emit Created(child, false);
    }

    function create2Child(bytes32 salt) external payable returns (address child) {
        child = address(new TraceChild{salt: salt, value: msg.value}());
        emit Created(child, true);
    }

    function fail() external payable {
        revert("inner");
    }

    /// Succeeds although its inner call (which carries the value) reverts.
    function tryFail() external payable {
        try this.fail{value: msg.value}() {} catch (bytes memory reason) {
            emit Caught(reason);
        }
    }

    /// Nests calls that move value, then reverts the whole transaction.
    function boom(address payable to) external payable {
        this.nest{value: msg.value}(2, to);
        revert("boom");
    }

    /// Creates a child and destroys it in the same transaction: the account is deleted.
    function createAndDestroy(address payable beneficiary) external payable returns (address child) {
        TraceChild created = new TraceChild{value: msg.value}();
        created.destroy(beneficiary);
        child = address(created);
        emit Created(child, false);
    }
}
"""

# Creation code of DevToken; append the ABI-encoded ``uint256 supply`` constructor argument.
DEV_TOKEN_BYTECODE = (
    "0x6080604052348015600e575f5ffd5b50604051610780380380610780833981016040819052602b91607956"
    "5b5f81815533808252600160209081526040808420859055518481529192917fddf252ad1be2c89b69c2b068"
    "fc378daa952ba7f163c4a11628f55a4df523b3ef910160405180910390a350608f565b5f6020828403121560"
    "88575f5ffd5b5051919050565b6106e48061009c5f395ff3fe608060405234801561000f575f5ffd5b506004"
    "361061009b575f3560e01c806370a082311161006357806370a082311461014d57806388d695b21461016c57"
    "806395d89b4114610181578063a9059cbb146101a3578063dd62ed3e146101b6575f5ffd5b806306fdde0314"
    "61009f578063095ea7b3146100e757806318160ddd1461010a57806323b872dd14610120578063313ce56714"
    "610133575b5f5ffd5b6100d16040518060400160405280601381526020017221b430b4b73630b5b2902232bb"
    "102a37b5b2b760691b81525081565b6040516100de91906104df565b60405180910390f35b6100fa6100f536"
    "600461052f565b6101e0565b60405190151581526020016100de565b6101125f5481565b6040519081526020"
    "016100de565b6100fa61012e366004610557565b61024c565b61013b601281565b60405160ff909116815260"
    "20016100de565b61011261015b366004610591565b60016020525f908152604090205481565b61017f61017a"
    "3660046105f9565b610333565b005b6100d16040518060400160405280600381526020016210d31160ea1b81"
    "525081565b6100fa6101b136600461052f565b6103cd565b6101126101c4366004610665565b600260209081"
    "525f928352604080842090915290825290205481565b335f8181526002602090815260408083206001600160"
    "a01b038716808552925280832085905551919290917f8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2"
    "291e5b200ac8c7c3b9259061023a9086815260200190565b60405180910390a35060015b92915050565b6001"
    "600160a01b0383165f908152600260209081526040808320338452909152812054828110156102b057604051"
    "62461bcd60e51b8152602060048201526009602482015268616c6c6f77616e636560b81b6044820152606401"
    "5b60405180910390fd5b6102ba83826106aa565b6001600160a01b0386165f81815260026020908152604080"
    "8320338085529252909120929092557f8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8"
    "c7c3b92561030c86856106aa565b60405190815260200160405180910390a36103288585856103e2565b5060"
    "01949350505050565b82811461036b5760405162461bcd60e51b81526020600482015260066024820152650d"
    "8cadccee8d60d31b60448201526064016102a7565b5f5b838110156103c6576103be3386868481811061038b"
    "5761038b6106bd565b90506020020160208101906103a09190610591565b8585858181106103b2576103b261"
    "06bd565b905060200201356103e2565b60010161036d565b5050505050565b5f6103d93384846103e2565b50"
    "600192915050565b6001600160a01b0383165f90815260016020526040902054811115610433576040516246"
    "1bcd60e51b815260206004820152600760248201526662616c616e636560c81b60448201526064016102a756"
    "5b6001600160a01b0383165f908152600160205260408120805483929061045a9084906106aa565b90915550"
    "506001600160a01b0382165f90815260016020526040812080548392906104869084906106d1565b92505081"
    "905550816001600160a01b0316836001600160a01b03167fddf252ad1be2c89b69c2b068fc378daa952ba7f1"
    "63c4a11628f55a4df523b3ef836040516104d291815260200190565b60405180910390a3505050565b602081"
    "525f82518060208401528060208501604085015e5f604082850101526040601f19601f830116840101915050"
    "92915050565b80356001600160a01b038116811461052a575f5ffd5b919050565b5f5f604083850312156105"
    "40575f5ffd5b61054983610514565b946020939093013593505050565b5f5f5f60608486031215610569575f"
    "5ffd5b61057284610514565b925061058060208501610514565b929592945050506040919091013590565b5f"
    "602082840312156105a1575f5ffd5b6105aa82610514565b9392505050565b5f5f83601f8401126105c1575f"
    "5ffd5b50813567ffffffffffffffff8111156105d8575f5ffd5b6020830191508360208260051b8501011115"
    "6105f2575f5ffd5b9250929050565b5f5f5f5f6040858703121561060c575f5ffd5b843567ffffffffffffff"
    "ff811115610622575f5ffd5b61062e878288016105b1565b909550935050602085013567ffffffffffffffff"
    "81111561064d575f5ffd5b610659878288016105b1565b95989497509550505050565b5f5f60408385031215"
    "610676575f5ffd5b61067f83610514565b915061068d60208401610514565b90509250929050565b634e487b"
    "7160e01b5f52601160045260245ffd5b8181038181111561024657610246610696565b634e487b7160e01b5f"
    "52603260045260245ffd5b808201808211156102465761024661069656"
)

# Creation code of PingDelegate (no constructor arguments).
PING_DELEGATE_BYTECODE = (
    "0x6080604052348015600e575f5ffd5b5060c680601a5f395ff3fe6080604052348015600e575f5ffd5b5060"
    "0436106030575f3560e01c80631e81ccb21460345780635c36b18614604d575b5f5ffd5b603b5f5481565b60"
    "405190815260200160405180910390f35b60536055565b005b60015f5f8282546064919060a2565b90915550"
    "505f5460405190815233907f78a327424158f99dcde9deeb550e97c0f1d53b23ebaec3ac54a53f58504b3c85"
    "9060200160405180910390a2565b8082018082111560c057634e487b7160e01b5f52601160045260245ffd5b"
    "9291505056"
)

# Creation code of TraceChild (no constructor arguments; payable: the value becomes its balance).
TRACE_CHILD_BYTECODE = (
    "0x6080604052606680600f5f395ff3fe608060405260043610601a575f3560e01c8062f55d9d14601e575b5f"
    "5ffd5b602d6029366004603b565b602f565b005b806001600160a01b0316ff5b5f60208284031215604a575f"
    "5ffd5b81356001600160a01b0381168114605f575f5ffd5b939250505056"
)

# Creation code of TraceLab (no constructor arguments). It embeds TraceChild's creation code.
TRACE_LAB_BYTECODE = (
    "0x6080604052348015600e575f5ffd5b5061086a8061001c5f395ff3fe608060405260043610610084575f35"
    "60e01c8063a3a4ba3111610057578063a3a4ba3114610100578063a9cc471814610108578063b4df49f41461"
    "0110578063b74af5a914610118578063d0d029e71461011e575f5ffd5b80633ec65ab0146100885780635244"
    "e834146100ae57806359e02dd7146100d9578063668a2f67146100eb575b5f5ffd5b61009b61009636600461"
    "06fe565b610131565b6040519081526020015b60405180910390f35b6100c16100bc366004610728565b6103"
    "97565b6040516001600160a01b0390911681526020016100a5565b3480156100e4575f5ffd5b504761009b56"
    "5b6100fe6100f9366004610728565b610468565b005b6100c161050b565b6100fe610579565b6100fe6105a9"
    "565b4761009b565b6100c161012c366004610741565b610662565b5f825f03610302575f826001600160a01b"
    "0316346040515f6040518083038185875af1925050503d805f8114610182576040519150601f19603f3d0116"
    "82016040523d82523d5f602084013e610187565b606091505b50509050806101c35760405162461bcd60e51b"
    "815260206004820152600360248201526270617960e81b60448201526064015b60405180910390fd5b604080"
    "51600481526024810182526020810180516001600160e01b031663b74af5a960e01b17905290515f91829130"
    "916101fc91610758565b5f60405180830381855af49150503d805f8114610234576040519150601f19603f3d"
    "011682016040523d82523d5f602084013e610239565b606091505b50915091508161027a5760405162461bcd"
    "60e51b815260206004820152600c60248201526b19195b1959d85d1958d85b1b60a21b604482015260640161"
    "01ba565b8080602001905181019061028e919061076e565b306001600160a01b03166359e02dd76040518163"
    "ffffffff1660e01b8152600401602060405180830381865afa1580156102ca573d5f5f3e3d5ffd5b50505050"
    "6040513d601f19601f820116820180604052508101906102ee919061076e565b6102f89190610799565b9350"
    "505050610391565b30633ec65ab0346103146001876107ac565b6040516001600160e01b031960e085901b16"
    "815260048101919091526001600160a01b038616602482015260440160206040518083038185885af1158015"
    "61035e573d5f5f3e3d5ffd5b50505050506040513d601f19601f820116820180604052508101906103839190"
    "61076e565b61038e906001610799565b90505b92915050565b5f5f346040516103a6906106d7565b60405180"
    "91039082f09050801580156103c1573d5f5f3e3d5ffd5b5060405162f55d9d60e01b81526001600160a01b03"
    "85811660048301529192509082169062f55d9d906024015f604051808303815f87803b158015610404575f5f"
    "fd5b505af1158015610416573d5f5f3e3d5ffd5b50505050809150816001600160a01b03167ff378d51c65d7"
    "1e3746838202f40d37078c1869b72f751c90f0dd520bd0022db55f60405161045a911515815260200190565b"
    "60405180910390a250919050565b6040516303ec65ab60e41b8152600260048201526001600160a01b038216"
    "60248201523090633ec65ab090349060440160206040518083038185885af11580156104b4573d5f5f3e3d5f"
    "fd5b50505050506040513d601f19601f820116820180604052508101906104d9919061076e565b5060405162"
    "461bcd60e51b81526004016101ba90602080825260049082015263626f6f6d60e01b60408201526060019056"
    "5b5f34604051610519906106d7565b6040518091039082f0905080158015610534573d5f5f3e3d5ffd5b5060"
    "40515f81529091506001600160a01b038216907ff378d51c65d71e3746838202f40d37078c1869b72f751c90"
    "f0dd520bd0022db59060200160405180910390a290565b60405162461bcd60e51b8152602060048201526005"
    "60248201526434b73732b960d91b60448201526064016101ba565b306001600160a01b031663a9cc47183460"
    "40518263ffffffff1660e01b81526004015f604051808303818588803b1580156105e2575f5ffd5b505af193"
    "5050505080156105f4575060015b610660573d808015610621576040519150601f19603f3d01168201604052"
    "3d82523d5f602084013e610626565b606091505b507f8087d831d70e75822e51283885964fd711684908501e"
    "2e5299d0551ca18ad1628160405161065691906107bf565b60405180910390a1505b565b5f81346040516106"
    "71906106d7565b82906040518091039083f59150508015801561068f573d5f5f3e3d5ffd5b50604051600181"
    "529091506001600160a01b038216907ff378d51c65d71e3746838202f40d37078c1869b72f751c90f0dd520b"
    "d0022db59060200160405180910390a2919050565b6075806107f583390190565b80356001600160a01b0381"
    "1681146106f9575f5ffd5b919050565b5f5f6040838503121561070f575f5ffd5b8235915061071f60208401"
    "6106e3565b90509250929050565b5f60208284031215610738575f5ffd5b61038e826106e3565b5f60208284"
    "031215610751575f5ffd5b5035919050565b5f82518060208501845e5f920191825250919050565b5f602082"
    "8403121561077e575f5ffd5b5051919050565b634e487b7160e01b5f52601160045260245ffd5b8082018082"
    "111561039157610391610785565b8181038181111561039157610391610785565b602081525f825180602084"
    "01528060208501604085015e5f604082850101526040601f19601f8301168401019150509291505056fe6080"
    "604052606680600f5f395ff3fe608060405260043610601a575f3560e01c8062f55d9d14601e575b5f5ffd5b"
    "602d6029366004603b565b602f565b005b806001600160a01b0316ff5b5f60208284031215604a575f5ffd5b"
    "81356001600160a01b0381168114605f575f5ffd5b939250505056"
)

# Storage slots of DevToken's mappings (for access lists): keccak(key . slot).
DEV_TOKEN_BALANCE_SLOT = 1
DEV_TOKEN_ALLOWANCE_SLOT = 2

# 4-byte selectors (from solc's methodIdentifiers).
SELECTOR_TRANSFER = "0xa9059cbb"  # transfer(address,uint256)
SELECTOR_APPROVE = "0x095ea7b3"  # approve(address,uint256)
SELECTOR_TRANSFER_FROM = "0x23b872dd"  # transferFrom(address,address,uint256)
SELECTOR_BATCH_TRANSFER = "0x88d695b2"  # batchTransfer(address[],uint256[])
SELECTOR_BALANCE_OF = "0x70a08231"  # balanceOf(address)
SELECTOR_PING = "0x5c36b186"  # ping()
SELECTOR_NEST = "0x3ec65ab0"  # TraceLab.nest(uint256,address)
SELECTOR_CREATE_CHILD = "0xa3a4ba31"  # TraceLab.createChild()
SELECTOR_CREATE2_CHILD = "0xd0d029e7"  # TraceLab.create2Child(bytes32)
SELECTOR_TRY_FAIL = "0xb4df49f4"  # TraceLab.tryFail()
SELECTOR_FAIL = "0xa9cc4718"  # TraceLab.fail()
SELECTOR_PEEK = "0x59e02dd7"  # TraceLab.peek()
SELECTOR_PROBE = "0xb74af5a9"  # TraceLab.probe()
SELECTOR_BOOM = "0x668a2f67"  # TraceLab.boom(address)
SELECTOR_CREATE_AND_DESTROY = "0x5244e834"  # TraceLab.createAndDestroy(address)
SELECTOR_DESTROY = "0x00f55d9d"  # TraceChild.destroy(address)

# keccak256("Transfer(address,address,uint256)") and keccak256("Approval(address,address,uint256)").
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
